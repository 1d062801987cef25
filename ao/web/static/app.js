// The dashboard's only script: live updates (one EventSource per tab), actions, the terminal.
// No build step, no framework. Everything shown comes rendered (and escaped) from the server.
(function () {
  "use strict";

  const meta = (name) => { const el = document.querySelector(`meta[name="${name}"]`); return el ? el.content : ""; };
  const CSRF = meta("ao-csrf");
  const NONCE = meta("ao-style-nonce");

  // The CSP allows only <style> elements carrying this response's nonce; xterm.js makes some of its own.
  const createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (name, options) {
    const el = createElement.call(this, name, options);
    if (NONCE && String(name).toLowerCase() === "style") el.setAttribute("nonce", NONCE);
    return el;
  };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const page = document.body.dataset.page;
  const sessionBox = $("#session");
  const SESSION = sessionBox ? sessionBox.dataset.id : "";
  const baseTitle = document.title;

  // ---------------------------------------------------------------------------------------- feedback
  function toast(message, ok) {
    const el = document.createElement("div");
    el.className = "toast" + (ok ? "" : " error");
    el.setAttribute("role", ok ? "status" : "alert");
    el.textContent = message;
    $("#toasts").appendChild(el);
    setTimeout(() => el.remove(), ok ? 6000 : 20000);
    return el;
  }

  async function post(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
        body: JSON.stringify(body || {}),
      });
    } catch (err) {
      return { ok: false, message: "the dashboard server did not answer: " + err };
    }
    let data = {};
    try { data = await response.json(); } catch (err) { data = { message: `${response.status} ${response.statusText}` }; }
    return { ok: response.ok && data.ok !== false, status: response.status, ...data };
  }

  async function act(url, body, button) {
    if (button) button.disabled = true;
    try {
      const result = await post(url, body);
      toast(result.message || (result.ok ? "done" : "failed"), result.ok);
      return result;
    } finally {
      if (button) button.disabled = false;
      if (page === "session") refreshButtons();
    }
  }

  // ----------------------------------------------------------------------------- attention: title, icon
  const attention = new Set((meta("ao-attention") || "").split(",").filter(Boolean));

  function showAttention() {
    const n = attention.size;
    document.title = n ? `(${n}) ${baseTitle}` : baseTitle;
    const count = $("#attention-count");
    if (count) count.textContent = String(n);
    const color = n ? "#cf222e" : "#1f6feb";
    const label = n ? (n > 99 ? "99+" : String(n)) : "ao";
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="${color}"/>` +
      `<text x="16" y="22" font-family="sans-serif" font-size="${label.length > 2 ? 12 : 16}" font-weight="bold" text-anchor="middle" fill="#fff">${label}</text></svg>`;
    const icon = $("#favicon");
    if (icon) icon.href = "data:image/svg+xml," + encodeURIComponent(svg);
  }

  // ------------------------------------------------------------------------------------------ the board
  function fromHTML(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function projectFilter() { const f = $("#project-filter"); return f ? f.value : ""; }

  function applyFilter(card) {
    const wanted = projectFilter();
    card.classList.toggle("hidden", Boolean(wanted) && card.dataset.project !== wanted);
  }

  function recount() {
    $$(".column").forEach((col) => {
      $(".count", col).textContent = String($$(".card:not(.hidden)", col).length);
    });
  }

  // Ages are kept current here: a card is rendered once, when its session changes.
  function age(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (seconds >= size) return `${Math.floor(seconds / size)}${unit}`;
    }
    return `${seconds}s`;
  }

  function refreshAges(root) {
    const now = Date.now() / 1000;
    $$(".age[data-since]", root).forEach((el) => { el.textContent = age(now - Number(el.dataset.since)); });
  }

  function onSession(msg) {
    if (msg.attention) attention.add(msg.id); else attention.delete(msg.id);
    showAttention();
    if (page !== "board") return;
    const old = document.getElementById("card-" + msg.id);
    const card = fromHTML(msg.html);
    refreshAges(card);
    applyFilter(card);
    const column = $(`#group-${msg.group} .cards`);
    if (old && old.parentElement === column) old.replaceWith(card);
    else { if (old) old.remove(); column.prepend(card); }
    recount();
  }

  function onRemoved(msg) {
    attention.delete(msg.id);
    showAttention();
    const old = document.getElementById("card-" + msg.id);
    if (old) { old.remove(); recount(); }
  }

  // -------------------------------------------------------------------------------------------- events
  function eventMatches(row) {
    const form = $("#event-filter");
    if (!form) return true;
    const type = form.elements.type.value.trim(), session = form.elements.session.value.trim();
    const text = form.elements.text.value.trim().toLowerCase();
    if (type && !(row.dataset.type === type || row.dataset.type.startsWith(type))) return false;
    if (session && row.dataset.session !== session) return false;
    if (text && !row.textContent.toLowerCase().includes(text)) return false;
    return true;
  }

  function filterEvents() {
    const rows = $$("#events tr");
    let shown = 0;
    rows.forEach((row) => { const ok = eventMatches(row); row.hidden = !ok; if (ok) shown += 1; });
    $("#event-count").textContent = String(shown);
    const form = $("#event-filter");
    const params = new URLSearchParams();
    ["type", "session", "text"].forEach((k) => { if (form.elements[k].value) params.set(k, form.elements[k].value); });
    history.replaceState(null, "", params.toString() ? "?" + params : location.pathname);
  }

  function onEvent(msg) {
    if (page === "events") {
      const row = fromHTML(`<table><tbody>${msg.html}</tbody></table>`).querySelector("tr");
      row.hidden = !eventMatches(row);
      $("#events").prepend(row);
      if (!row.hidden) $("#event-count").textContent = String(Number($("#event-count").textContent) + 1);
    } else if (page === "session" && msg.event.session === SESSION) {
      $("#timeline").prepend(fromHTML(`<table><tbody>${msg.html}</tbody></table>`).querySelector("tr"));
    }
  }

  // ------------------------------------------------------------------------------------- the live stream
  function live(on, text) {
    const el = $("#live");
    el.className = "live " + (on ? "on" : "off");
    el.textContent = text || (on ? "live" : "reconnecting…");
  }

  function handle(msg) {
    if (msg.kind === "session") onSession(msg);
    else if (msg.kind === "removed") onRemoved(msg);
    else if (msg.kind === "event") onEvent(msg);
    else if (msg.kind === "detail" && msg.id === SESSION) onDetail(msg);
    else if (msg.kind === "poller") $("#poller-banner").hidden = msg.running;
    else if (msg.kind === "problems") {
      $("#problems-banner").textContent = msg.text;
      $("#problems-banner").hidden = !msg.text;
    }
    else if (msg.kind === "reset") location.reload();
  }

  // One WebSocket per tab (an EventSource per tab would run into the browser's six connections per host),
  // resuming after a drop from the last message it had.
  function connect() {
    let cursor = meta("ao-cursor");
    if (!cursor) { live(false, "not live"); return; }
    let retries = 0;
    function open() {
      const params = new URLSearchParams({ since: cursor });
      if (SESSION) params.set("session", SESSION);
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${proto}//${location.host}/ws/stream?${params}`);
      ws.onopen = () => { retries = 0; live(true); };
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.cursor) cursor = msg.cursor;
        handle(msg);
      };
      ws.onclose = () => {
        live(false);
        setTimeout(open, Math.min(10000, 250 * 2 ** retries++));
      };
      window.aoStream = ws;
    }
    open();
  }

  // -------------------------------------------------------------------------------------- session page
  function detail() { return $("#detail .detail"); }

  function refreshButtons() {
    const d = detail();
    if (!d) return;
    const ended = d.dataset.terminal === "yes";
    const finished = ["merged", "done", "cleanup"].includes(d.dataset.status);
    $("#kill-btn").disabled = ended;
    $("#restore-btn").disabled = !ended || finished;
    $("#merge-btn").disabled = !d.dataset.sha || !$("#criteria");
    $$("#send-form button").forEach((b) => { b.disabled = ended; });
    if (d.dataset.waiting) $("#answer-mode").parentElement.classList.add("warn");
  }

  // Why the terminal is gone, in the session's own terms when its status says more than the stream did.
  const ENDED = {
    killed: "The session was killed: its terminal is gone. Restore starts its agent again.",
    exited: "The agent has exited: its terminal is gone. Restore starts it again.",
    merged: "The session is merged: its terminal has ended.",
    done: "The session is done: its terminal has ended.",
    cleanup: "The session was cleaned up: its terminal is gone.",
  };

  function endedText(reason) {
    const d = detail();
    return (d && ENDED[d.dataset.status]) || reason || "The terminal has ended.";
  }

  function onDetail(msg) {
    $("#detail").innerHTML = msg.html;
    refreshButtons();
    if (!terminal) return;
    if (detail().dataset.terminal === "no" && terminal.ended) terminal.reopen();
    else if (terminal.ended) $("#term-ended").textContent = endedText(terminal.reason);
  }

  function sessionPage() {
    const base = `/api/sessions/${encodeURIComponent(SESSION)}`;
    const sendForm = $("#send-form");
    sendForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = sendForm.elements.text.value;
      const result = await act(base + "/send", { text, answer: $("#answer-mode").checked }, ev.submitter);
      if (result.ok) sendForm.elements.text.value = "";
      else if (result.waiting_for) $("#answer-mode").parentElement.classList.add("warn");
    });
    $$("#send-form .quick").forEach((b) => b.addEventListener("click",
      () => act(base + "/reply", { reply: b.dataset.reply, answer: $("#answer-mode").checked }, b)));
    $("#kill-btn").addEventListener("click", (ev) => {
      if (confirm(`Kill ${SESSION}? Its agent stops; the workspace stays until cleanup.`)) act(base + "/kill", {}, ev.target);
    });
    $("#restore-btn").addEventListener("click", (ev) => act(base + "/restore", {}, ev.target));
    const dialog = $("#merge-dialog");
    $("#merge-btn").addEventListener("click", () => {
      const d = detail();
      $("#merge-sha").textContent = d.dataset.sha;
      const list = $("#merge-criteria");
      list.replaceChildren(...$$("#criteria li").map((li) => li.cloneNode(true)));
      $("#merge-warning").hidden = $$("#criteria li").every((li) => li.dataset.ok === "yes");
      dialog.dataset.sha = d.dataset.sha;
      dialog.showModal();
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "merge") act(base + "/merge", { sha: dialog.dataset.sha }, $("#merge-btn"));
    });
    const review = $("#review-form");
    if (review) {
      $$("button[data-verdict]", review).forEach((b) => b.addEventListener("click", async () => {
        const result = await act(base + "/review", { verdict: b.dataset.verdict, text: review.elements.text.value }, b);
        if (result.ok) review.elements.text.value = "";
      }));
    }
    const toggle = $("#typing-toggle"), typeForm = $("#type-form");
    const key = "ao-typing:" + SESSION;
    toggle.checked = localStorage.getItem(key) === "on";
    typeForm.hidden = !toggle.checked;
    toggle.addEventListener("change", () => {
      localStorage.setItem(key, toggle.checked ? "on" : "off");
      typeForm.hidden = !toggle.checked;
      if (toggle.checked) typeForm.elements.line.focus();
    });
    typeForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const line = typeForm.elements.line.value;
      if (!line.trim()) return;
      const result = await act(base + "/send", { text: line, answer: $("#answer-mode").checked });
      if (result.ok) typeForm.elements.line.value = "";
    });
    refreshButtons();
  }

  // ---------------------------------------------------------------------------------------- the terminal
  let terminal = null;

  function startTerminal() {
    const box = $("#terminal");
    if (!box || typeof window.Terminal !== "function") return;
    const term = new window.Terminal({ disableStdin: true, cursorBlink: false, scrollback: 5000, fontSize: 12,
      fontFamily: '"DejaVu Sans Mono", ui-monospace, monospace', cols: 200, rows: 50 });
    term.open(box);
    const state = (text) => { $("#term-state").textContent = text; };
    const endedBox = $("#term-ended");
    const t = { term, ended: false, socket: null, retries: 0 };
    function open() {
      t.ended = false;
      endedBox.hidden = true;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${proto}//${location.host}/ws/terminal/${encodeURIComponent(SESSION)}`);
      t.socket = ws;
      ws.binaryType = "arraybuffer";
      ws.onmessage = (ev) => {
        if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
        const msg = JSON.parse(ev.data);
        if (msg.type === "hello") {
          t.retries = 0;
          term.reset();
          term.resize(msg.cols, msg.rows);
          state(msg.mode === "live" ? "live, read-only" : msg.mode === "captured" ? "captured text, read-only" : "");
        } else if (msg.type === "ended") {
          t.ended = true;
          t.reason = msg.reason;
          state("ended");
          endedBox.textContent = endedText(msg.reason);
          endedBox.hidden = false;
        }
      };
      ws.onclose = () => {
        if (t.ended || t.socket !== ws) return;
        state("disconnected, reconnecting…");
        setTimeout(() => { if (t.socket === ws) open(); }, Math.min(10000, 500 * 2 ** t.retries++));
      };
    }
    t.reopen = () => { if (t.socket) t.socket.close(); open(); };
    open();
    terminal = t;
    window.aoTerminal = term;
  }

  // ------------------------------------------------------------------------------------------ other pages
  function boardPage() {
    const filter = $("#project-filter");
    const apply = () => {
      $$(".card").forEach(applyFilter);
      recount();
      history.replaceState(null, "", filter.value ? "?project=" + encodeURIComponent(filter.value) : "/");
    };
    filter.addEventListener("change", apply);
    apply();
    refreshAges();
    setInterval(refreshAges, 15000);
  }

  function eventsPage() {
    const form = $("#event-filter");
    form.addEventListener("input", filterEvents);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); filterEvents(); });
    filterEvents();
  }

  function spawnPage() {
    const form = $("#spawn-form"), project = $("#spawn-project"), issue = $("#spawn-issue");
    async function load() {
      issue.replaceChildren(new Option("loading…", ""));
      const response = await fetch(`/api/projects/${encodeURIComponent(project.value)}/issues`, { credentials: "same-origin" });
      const data = await response.json().catch(() => ({ ok: false, message: "bad answer" }));
      if (!data.ok) { issue.replaceChildren(new Option("(cannot list issues)", "")); toast(data.message, false); return; }
      issue.replaceChildren(...(data.issues.length ? data.issues.map((i) => new Option(`#${i.id} ${i.title}`, i.id))
        : [new Option("(no open issues)", "")]));
    }
    project.addEventListener("change", load);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const result = await act("/api/spawn", { project: project.value, issue: issue.value, prompt: form.elements.prompt.value },
        ev.submitter);
      const m = result.ok && /^spawned (\S+)/.exec(result.message);
      if (m) setTimeout(() => { location.href = "/s/" + encodeURIComponent(m[1]); }, 800);
    });
    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    showAttention();
    if (page === "board") boardPage();
    if (page === "events") eventsPage();
    if (page === "spawn") spawnPage();
    if (page === "session") { sessionPage(); startTerminal(); }
    connect();
  });
})();
