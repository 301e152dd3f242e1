// Shared by the admin pages: the API client (bearer token, JSON errors, blobs,
// uploads with progress), the token box, a confirm dialog and small DOM helpers.
// No framework, no build step. Text from the server only ever goes in through
// textContent / attributes, never innerHTML.

export const TOKEN_KEY = "avatarAdminToken";
export const API = "/admin/api";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }

  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (err) {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (err) {
    /* storage disabled: the token lives only as long as this call */
  }
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const token = getToken();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return headers;
}

// Called with the ApiError whenever the API answers 401/403 (set by the page).
let authNeeded = () => {};
export function onAuthNeeded(fn) {
  authNeeded = fn;
}

async function errorFrom(resp) {
  let message = "";
  try {
    const body = await resp.clone().json();
    if (body && typeof body.error === "string") message = body.error;
  } catch (err) {
    try {
      message = (await resp.text()).slice(0, 300);
    } catch (err2) {
      /* no body */
    }
  }
  const retry = resp.headers.get("Retry-After");
  if (resp.status === 429 && retry) message = `${message || "too many requests"} (retry in ${retry} s)`;
  const error = new ApiError(resp.status, message || `HTTP ${resp.status} ${resp.statusText}`);
  if (error.isAuth) authNeeded(error);
  return error;
}

async function send(path, opts) {
  const options = opts || {};
  const headers = authHeaders(options.headers);
  let body = options.body;
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(options.json);
  }
  let resp;
  try {
    resp = await fetch(path, {
      method: options.method || "GET",
      headers,
      body,
      cache: "no-store",
      signal: options.signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "Cannot reach the server.");
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp;
}

// JSON API call; resolves to the parsed body, or null for 204.
export async function api(path, opts) {
  const resp = await send(path, opts);
  if (resp.status === 204) return null;
  return resp.json();
}

// Binary API call (audio, exports); resolves to a Blob.
export async function apiBlob(path, opts) {
  const resp = await send(path, opts);
  return resp.blob();
}

// multipart POST with upload progress (fetch has no upload progress events).
// onProgress(fraction 0..1 | null when the size is unknown). Resolves to the JSON body.
export function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const token = getToken();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.responseType = "text";
    xhr.upload.onprogress = (ev) => onProgress(ev.lengthComputable ? ev.loaded / ev.total : null);
    xhr.upload.onload = () => onProgress(1);
    xhr.onerror = () => reject(new ApiError(0, "The upload failed: the connection was lost."));
    xhr.onabort = () => reject(new ApiError(0, "The upload was cancelled."));
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch (err) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
        return;
      }
      let message = body && typeof body.error === "string" ? body.error : "";
      if (!message) message = `HTTP ${xhr.status} ${xhr.statusText}`;
      const error = new ApiError(xhr.status, message);
      if (error.isAuth) authNeeded(error);
      reject(error);
    };
    xhr.send(formData);
  });
}

// ------------------------------------------------------------------ DOM

// el("button", {type: "button", class: "x", dataset: {id}, onclick}, "text", child...)
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A status line: kind "error" | "info" | "ok"; empty text hides it.
export function say(node, text, kind) {
  node.textContent = text || "";
  node.dataset.kind = kind || "info";
  node.hidden = !text;
}

export function errorText(err) {
  if (err instanceof ApiError) return err.message;
  return err && err.message ? err.message : String(err);
}

// ---------------------------------------------------------------- audio

// Plays an API audio resource in `audio` (fetched with the auth header, so
// the <audio> gets a blob: URL). The previous blob URL of that element is freed.
export async function playInto(audio, path, opts) {
  const blob = await apiBlob(path, opts);
  if (audio.dataset.blobUrl) URL.revokeObjectURL(audio.dataset.blobUrl);
  const url = URL.createObjectURL(blob);
  audio.dataset.blobUrl = url;
  audio.src = url;
  audio.hidden = false;
  try {
    await audio.play();
  } catch (err) {
    /* autoplay refused: the controls are there to press play */
  }
  return blob;
}

// Saves a Blob as a file through a temporary <a download>.
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ----------------------------------------------------------- token box

// Wires the page's token form (#token-panel). onSaved() reloads the data.
export function setupTokenBox(onSaved) {
  const panel = document.getElementById("token-panel");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const note = document.getElementById("token-note");
  const forget = document.getElementById("token-forget");

  onAuthNeeded((error) => {
    const had = !!getToken();
    say(
      note,
      error.status === 401 && !had
        ? "The admin API needs a token."
        : `The server refused the token: ${error.message}`,
      "error"
    );
    if (panel.hidden) {
      panel.hidden = false;
      input.focus();
    }
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    panel.hidden = true;
    say(note, "");
    onSaved();
  });
  forget.addEventListener("click", () => {
    setToken("");
    input.value = "";
    input.focus();
  });
}

// ----------------------------------------------------- confirm dialog

// Resolves true when the operator confirms. Uses the page's <dialog id="confirm-dialog">.
export function confirmAction(message, actionLabel) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = message;
  document.getElementById("confirm-ok").textContent = actionLabel || "Delete";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

// ---------------------------------------------------------- pagination

// Fills a pager <nav> for {total, limit, offset}; go(offset) loads a page.
export function renderPager(nav, page, go) {
  const { total, limit, offset } = page;
  const first = total ? offset + 1 : 0;
  const last = Math.min(offset + limit, total);
  const prev = el("button", {
    type: "button",
    class: "secondary-button small",
    disabled: offset <= 0,
    onclick: () => go(Math.max(0, offset - limit)),
  }, "Previous");
  const next = el("button", {
    type: "button",
    class: "secondary-button small",
    disabled: offset + limit >= total,
    onclick: () => go(offset + limit),
  }, "Next");
  const label = el("span", { class: "pager-label" }, `${first}–${last} of ${total}`);
  nav.replaceChildren(prev, label, next);
  nav.hidden = total <= limit && offset === 0;
}
