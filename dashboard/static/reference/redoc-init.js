// ReDoc on /openapi.json, from the vendored bundle (no inline script: the page's CSP).
window.Redoc.init("/openapi.json", {}, document.getElementById("redoc"));
