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
    // replaced by the selected img2img mode (img2img, Sketch, Inpaint, Inpaint upload here).
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

    // Settings as `opts.<key>`, filled by the page's hidden settings_json component.
    window.opts = window.opts || {};
    window.webuiSetOptions = function (values) {
        if (!values || typeof values !== "object") return;
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
        preparing = false;
        loaded = true;
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
        // Switching tabs may only flip attributes of nodes that already exist.
        new MutationObserver(checkTab).observe(root, {attributes: true, subtree: true, attributeFilter: ["aria-selected"]});
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
