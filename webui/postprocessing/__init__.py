"""Post-processing of finished images: model upscalers, face restoration, the Extras pipeline.

Free of Gradio and HTTP: the Extras tab, the API, the hires fix and the SD upscale script all call in here.
Model files live in A1111's folders under the models directory (model_files.py); nothing is downloaded.
"""
