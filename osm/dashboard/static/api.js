// The dashboard's JSON API (the contract of issue #18): every body carries `errors`, and a
// source that is down never turns into a 5xx. A failure here therefore means the dashboard
// server itself is unreachable or answered something that is not the contract; callers get
// `{ok: false, error}` rather than an exception, so no view ever throws on a bad answer.

const TIMEOUT_MS = 8000;

// A request index.html started early (`window.__osmFirst`), taken once.
function early(path) {
  const started = window.__osmFirst?.get(path);
  if (started) window.__osmFirst.delete(path);
  return started;
}

export async function getJSON(path) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  const aborted = new Promise((_, reject) => {
    controller.signal.addEventListener("abort", () => reject(new DOMException("timeout", "AbortError")));
  });
  try {
    const request = early(path) ?? fetch(path, { signal: controller.signal, headers: { accept: "application/json" } });
    const response = await Promise.race([request, aborted]);
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      return { ok: false, error: `dashboard: ${path} answered ${response.status} without JSON` };
    }
    if (!response.ok) {
      const errors = Array.isArray(body?.errors) ? body.errors.join("; ") : "";
      return { ok: false, error: `dashboard: ${path} answered ${response.status} ${errors}`.trim() };
    }
    if (!Array.isArray(body.errors)) body.errors = [];
    return { ok: true, body };
  } catch (error) {
    const reason = error?.name === "AbortError" ? `timed out after ${TIMEOUT_MS / 1000} s` : "unreachable";
    return { ok: false, error: `dashboard: ${path} ${reason}` };
  } finally {
    clearTimeout(timer);
  }
}
