// The page-script API that A1111 extensions' javascript/*.js files use, for Gradio 6's page.
// It is loaded before any extension script (webui/extensions/assets.py).
(function () {
    "use strict";

    let optionsReady = false;
    const registered = {
        uiLoaded: [], uiUpdate: [], afterUiUpdate: [], uiTabChange: [], optionsChanged: [], optionsAvailable: [],
    };

    function call(list, ...args) {
        for (const callback of list) {
            try {
                callback(...args);
            } catch (error) {
                console.error("an extension's page callback failed:", error);
            }
        }
    }

    // The element that holds the UI. Gradio 6 uses no shadow DOM; scripts still call
    // gradioApp().getElementById(...), which a plain element lacks.
    window.gradioApp = function () {
        const app = document.querySelector("gradio-app");
        if (!app) return document;
        const root = app.shadowRoot || app;
        if (!root.getElementById) root.getElementById = (id) => document.getElementById(id);
        return root;
    };

    window.onUiLoaded = (callback) => registered.uiLoaded.push(callback);
    window.onUiUpdate = (callback) => registered.uiUpdate.push(callback);
    window.onAfterUiUpdate = (callback) => registered.afterUiUpdate.push(callback);
    window.onUiTabChange = (callback) => registered.uiTabChange.push(callback);
    window.onOptionsChanged = (callback) => registered.optionsChanged.push(callback);
    window.onOptionsAvailable = function (callback) {
        if (optionsReady) call([callback]);
        else registered.optionsAvailable.push(callback);
    };
    window.executeCallbacks = call;

    // A1111's page has extension scripts in its HTML, so they see DOMContentLoaded and the window's
    // load event; Gradio inserts them after both have fired. A listener added after its event ran
    // runs once, right after the script that added it, as it would have on A1111's page.
    const hasFired = (type) => (type === "DOMContentLoaded" ? document.readyState !== "loading"
                                                           : document.readyState === "complete");
    for (const target of [document, window]) {
        const addListener = target.addEventListener;
        target.addEventListener = function (type, listener, options) {
            const late = listener && hasFired(type) && (type === "DOMContentLoaded" || (type === "load" && this === window));
            if (!late) return addListener.call(this, type, listener, options);
            const handler = typeof listener === "function" ? listener : listener.handleEvent.bind(listener);
            setTimeout(() => handler.call(this, new Event(type)), 0);
        };
    }

    // Gradio 3 put a textbox's textarea (and a number's input) right under its <label>, and
    // extensions find prompts with selectors like "#txt2img_prompt > label > textarea"; Gradio 6
    // nests them deeper. A query that finds nothing is tried once more with those steps relaxed.
    const GRADIO3_STEP = /\blabel\s*>\s*(textarea|input)/;
    const relaxed = (selector) => selector.replace(new RegExp(GRADIO3_STEP.source, "g"), "label $1");
    for (const proto of [Document.prototype, Element.prototype, DocumentFragment.prototype]) {
        const one = proto.querySelector, all = proto.querySelectorAll;
        proto.querySelector = function (selector) {
            const found = one.call(this, selector);
            if (found || typeof selector !== "string" || !GRADIO3_STEP.test(selector)) return found;
            return one.call(this, relaxed(selector));
        };
        proto.querySelectorAll = function (selector) {
            const found = all.call(this, selector);
            if (found.length || typeof selector !== "string" || !GRADIO3_STEP.test(selector)) return found;
            return all.call(this, relaxed(selector));
        };
    }

    // An error thrown by an extension's page script goes to the server, which shows it for that extension
    // in the Extensions tab (webui/extensions/assets.py page_error_sink). Each error once per page.
    const pageErrors = [], reported = new Set();
    function reportPageErrors() {
        const box = document.querySelector("#extension_page_errors textarea");
        if (!box) return;
        while (pageErrors.length) {
            box.value = JSON.stringify(pageErrors.shift());
            updateInput(box);
        }
    }
    window.addEventListener("error", (event) => {
        if (!event.filename || !event.filename.includes("file=")) return;
        const report = {url: event.filename, line: event.lineno, message: String(event.message)};
        const key = JSON.stringify(report);
        if (reported.has(key) || reported.size > 50) return;
        reported.add(key);
        pageErrors.push(report);
        reportPageErrors();
    });
    registered.uiLoaded.push(reportPageErrors);

    // Globals of A1111's own page scripts that extensions read or extend.
    window.titles = window.titles || {};  // hints.js: tooltip text by element label
    // aspectRatioOverlay.js: called as dimensionChange(event, isWidth, isHeight) when a size slider
    // moves; A1111 draws the ratio over the img2img image. We keep the last size for scripts.
    window.dimensionChange = function (event, isWidth, isHeight) {
        const value = Number(event && event.target && event.target.value);
        if (!Number.isFinite(value)) return;
        window.webuiTargetSize = window.webuiTargetSize || {};
        if (isWidth) window.webuiTargetSize.width = value;
        if (isHeight) window.webuiTargetSize.height = value;
    };

    // The selected top-level tab's button (its text is the tab's name, as in A1111).
    window.get_uiCurrentTab = function () {
        const list = gradioApp().querySelector("#tabs [role=tablist]");
        return list ? list.querySelector("[role=tab][aria-selected=true]") : null;
    };

    window.get_uiCurrentTabContent = function () {
        const button = get_uiCurrentTab();
        const id = button && button.getAttribute("aria-controls");
        return id ? document.getElementById(id) : null;
    };

    window.get_tab_index = function (tabsId) {
        const tabs = document.getElementById(tabsId);
        const list = tabs && tabs.querySelector("[role=tablist]");
        if (!list) return 0;
        const index = Array.from(list.querySelectorAll("[role=tab]")).findIndex(
            (tab) => tab.getAttribute("aria-selected") === "true");
        return Math.max(index, 0);
    };

    // A1111 uses it as a submit preprocessor: the arguments minus the last two, the first
    // replaced by the selected img2img mode (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload).
    window.get_img2img_tab_index = function (...args) {
        const result = args.slice(0, Math.max(args.length - 2, 0));
        result[0] = get_tab_index("mode_img2img");
        return result;
    };

    // Tell Gradio that a script changed an input's value.
    window.updateInput = function (target) {
        const event = new Event("input", {bubbles: true});
        Object.defineProperty(event, "target", {value: target});
        target.dispatchEvent(event);
    };

    // Settings as `opts.<key>`, filled by the page's hidden settings_json component. A1111 fills them once
    // its page is whole, and extensions take filled opts as the sign that it is (aspect-ratio-helper then
    // looks up every img2img editor): until every tab is built (prepare below), the values wait.
    window.opts = window.opts || {};
    let waitingOptions = null;
    window.webuiSetOptions = function (values) {
        if (!values || typeof values !== "object") return;
        if (!loaded) {
            waitingOptions = values;
            return;
        }
        for (const key of Object.keys(window.opts)) delete window.opts[key];
        Object.assign(window.opts, values);
        if (!optionsReady) {
            optionsReady = true;
            call(registered.optionsAvailable);
            registered.optionsAvailable.length = 0;
        }
        call(registered.optionsChanged);
    };

    let loaded = false;
    let preparing = false;
    let currentTab = null;
    let afterTimer = null;
    let lastChange = Date.now();
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

    function checkTab() {
        const tab = get_uiCurrentTab();
        if (!preparing && tab && tab !== currentTab) {
            currentTab = tab;
            call(registered.uiTabChange);
        }
    }

    // Gradio 6 builds a tab's content the first time the tab is shown, while A1111's page held
    // every tab from the start, and extensions look up other tabs' elements (#img2img_prompt ...)
    // in onUiLoaded. So show each tab once and go back (not the Extensions tab: showing it asks
    // the server for its list), wait for the page to settle, then call onUiLoaded.
    async function prepare() {
        preparing = true;
        const seen = new Set();
        for (let pass = 0; pass < 4; pass++) {
            const lists = Array.from(gradioApp().querySelectorAll("[role=tablist]")).filter((list) => !seen.has(list));
            if (!lists.length) break;
            for (const list of lists) {
                seen.add(list);
                const tabs = Array.from(list.querySelectorAll("[role=tab]")).filter(
                    (tab) => tab.getAttribute("aria-controls") !== "tab_extensions");
                const selected = tabs.find((tab) => tab.getAttribute("aria-selected") === "true");
                for (const tab of tabs) {
                    if (tab !== selected) {
                        tab.click();
                        await sleep(0);
                    }
                }
                if (selected) selected.click();
            }
            const started = Date.now();
            while (Date.now() - lastChange < 150 && Date.now() - started < 5000) await sleep(50);
        }
        // Extensions' closed accordions were built open so that their content exists (gradio_compat): close them.
        for (const accordion of gradioApp().querySelectorAll(".gradio3-closed")) {
            accordion.classList.remove("gradio3-closed");
            accordion.querySelector(".label-wrap")?.click();  // its own comes first
        }
        preparing = false;
        loaded = true;
        if (waitingOptions) window.webuiSetOptions(waitingOptions);
        waitingOptions = null;
        call(registered.uiLoaded);
        checkTab();
    }

    function observed(mutations) {
        lastChange = Date.now();
        if (!loaded && !preparing && gradioApp().querySelector("#txt2img_prompt")) prepare();
        call(registered.uiUpdate, mutations);
        clearTimeout(afterTimer);
        afterTimer = setTimeout(() => call(registered.afterUiUpdate), 200);
        checkTab();
    }

    function observe() {
        const root = gradioApp();
        new MutationObserver(observed).observe(root, {childList: true, subtree: true});
        // Switching tabs may only flip attributes of nodes that already exist; in Gradio 3 it changed the
        // page's children, so extensions wait for onUiUpdate/onAfterUiUpdate to see the new tab.
        new MutationObserver(observed).observe(root, {attributes: true, subtree: true, attributeFilter: ["aria-selected"]});
    }

    if (document.querySelector("gradio-app")) observe();
    else document.addEventListener("DOMContentLoaded", observe);

    // "Apply and restart UI": wait for the server to go away and come back, then reload.
    window.webuiReloadAfterRestart = async function () {
        const up = () => fetch(location.href, {cache: "no-store"}).then((reply) => reply.ok, () => false);
        const started = Date.now();
        while (Date.now() - started < 30000 && await up()) await sleep(300);
        while (Date.now() - started < 600000 && !(await up())) await sleep(1000);
        location.reload();
    };
})();
