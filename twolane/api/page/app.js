/* twolane web page: read a file in the browser, label its comments with the instant lane
 * (POST v1/predict, in chunks) or the batch lane (POST v1/jobs, then poll), chart the results
 * and download them; then, on request, summarise them by theme (POST v1/summaries, then poll) and
 * download that report (Markdown or HTML: it holds quotes, redacted, from the comments). Plain JavaScript, no framework, no build step.
 *
 * Comment text stays in this page's memory: it is sent to this service only inside the labelling
 * requests, and never written to a download. Every URL is relative to the page, so the page also
 * works under an API Gateway path prefix.
 */
"use strict";

(function () {
  const STANDARD = { id: "comment_id", text: "comment_text", qt: "question_type" };
  // Header names tried, in order, when the standard one is missing (compared lower-case, with
  // runs of spaces/underscores as one space). The FFT names are those of the NHS data set.
  const GUESSES = {
    id: ["comment id", "id", "response id", "respondent id", "row id"],
    text: ["comment text", "fft answer", "comment", "comments", "text", "answer", "response",
      "feedback", "free text"],
    qt: ["question type", "fft question", "question"],
  };
  const QUESTION_TYPES = ["what_good", "could_improve", "nonspecific"];
  const NOT_POSSIBLE = "Labelling not possible";
  const SENTIMENTS = [
    { score: 1, label: "very positive", colour: "#2166ac" },
    { score: 2, label: "positive", colour: "#67a9cf" },
    { score: 3, label: "neutral or mixed", colour: "#c4c4c4" },
    { score: 4, label: "negative", colour: "#ef8a62" },
    { score: 5, label: "very negative", colour: "#b2182b" },
  ];
  const NO_SENTIMENT = { label: "no sentiment", colour: "#8d99a6" };
  // Colours of a bundle's own sentiment classes (its scale is not the NHS one), in class order.
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac"];
  const TABLE_ROWS_SHOWN = 500;
  const INSTANT_CHUNK = 500; // comments per v1/predict request, at most the server's max_items
  const LABEL_SEPARATOR = "; "; // as the drop folder writes labels in one CSV cell

  const state = {
    fileName: "",
    columns: [], // header names
    rows: [], // arrays of cell values, one per data row
    items: null, // [{comment_id, comment_text, question_type}] built from the picked columns
    texts: new Map(), // comment_id -> text, for the on-page table only
    results: [], // [{comment_id, labels, sentiment}] from the service
    modelVersion: "",
    // The served bundle (GET v1/models): its taxonomy, sentiment scale, what each comment may
    // carry (question types or its own context column) and whether the batch lane takes its
    // comments. null until read (or when it cannot be read): the NHS bundle's defaults.
    model: null,
    modelReady: Promise.resolve(),
    sentiments: SENTIMENTS, // [{score, label, colour}] of the served bundle's scale
    nhsScale: true, // the NHS five-point scale (1 very positive .. 5 very negative)
    unlabellable: NOT_POSSIBLE, // the bundle's unlabellable label, or null
    lane: "instant",
    apiKey: "",
    limits: { max_items: 2000, max_job_items: 50000, max_text_chars: 5000 },
    running: false,
    cancelled: false,
    summary: null, // the last summary job's answer (v1/summaries)
    summarising: false,
    charts: {},
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  function show(el, on) { el.hidden = !on; }

  function setError(id, message) {
    const el = $(id);
    el.textContent = message || "";
    show(el, Boolean(message));
  }

  function plural(n, word) { return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`; }

  // A summary theme's counts: "12 comments, 5 negative" (NHS scale), "12 comments" (a team's own
  // scale: the service counts no negatives, negative is null)
  function summaryCounts(t) {
    const negative = t.negative === null || t.negative === undefined ? "" : `, ${t.negative.toLocaleString()} negative`;
    return `${plural(t.comments, "comment")}${negative}`;
  }

  function norm(name) { return String(name).trim().toLowerCase().replace(/[\s_]+/g, " "); }

  function cellText(v) {
    if (v === null || v === undefined) return "";
    if (v instanceof Date) return v.toISOString();
    return String(v);
  }

  function named(ids, max = 10) {
    const shown = ids.slice(0, max).map((i) => `"${i}"`).join(", ");
    return ids.length > max ? `${shown} and ${ids.length - max} more` : shown;
  }

  /** An URL relative to the page (also for the absolute paths the API hands out, such as
   *  results_url "/v1/jobs/ID": behind a path prefix they are relative to the page too). */
  function apiUrl(path) { return new URL(path.replace(/^\/+/, ""), document.baseURI).href; }

  function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

  /** Normalise a question to what_good / could_improve / nonspecific, as the model build does. */
  function questionType(value) {
    const q = cellText(value).trim().toLowerCase().split(/\s+/).join(" ");
    if (QUESTION_TYPES.includes(q)) return q;
    if (q.startsWith("what was good")) return "what_good";
    if (q.startsWith("how could we improve") || q.startsWith("what could we do better")) {
      return "could_improve";
    }
    return "nonspecific";
  }

  // ---------------------------------------------------------------------------------------------
  // Reading a file: every format becomes a header row and data rows.

  class FileProblem extends Error {}

  function decodeText(buffer) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buffer).replace(/^\ufeff/, "");
    } catch (e) {
      return new TextDecoder("windows-1252").decode(buffer); // Excel's "CSV" on Windows
    }
  }

  function fromCsv(text) {
    const parsed = window.Papa.parse(text, { skipEmptyLines: "greedy" });
    if (!parsed.data.length) throw new FileProblem("The file has no rows.");
    const bad = parsed.errors.find((e) => e.type === "Quotes");
    if (bad) {
      throw new FileProblem(`The CSV has an unclosed quote near row ${bad.row + 1}; ` +
        "save it again from your spreadsheet program.");
    }
    return { columns: parsed.data[0], rows: parsed.data.slice(1) };
  }

  function fromObjects(list) {
    if (!Array.isArray(list) || !list.length) {
      throw new FileProblem("The JSON has no comments: expected a list of objects, or " +
        '{"items": [...]}.');
    }
    const columns = [];
    for (const obj of list) {
      if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
        throw new FileProblem("Every entry of the JSON list must be an object such as " +
          '{"comment_id": "1", "comment_text": "..."}.');
      }
      for (const k of Object.keys(obj)) if (!columns.includes(k)) columns.push(k);
    }
    return { columns, rows: list.map((obj) => columns.map((c) => obj[c])) };
  }

  function fromJson(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      // Perhaps JSON Lines: one object per line.
      const lines = text.split(/\r?\n/).filter((l) => l.trim());
      try {
        data = lines.map((l) => JSON.parse(l));
      } catch (e2) {
        throw new FileProblem("The file is not valid JSON (nor JSON Lines).");
      }
    }
    if (data && !Array.isArray(data) && Array.isArray(data.items)) data = data.items;
    return fromObjects(data);
  }

  async function fromXlsx(file) {
    let got;
    try {
      got = await window.readXlsxFile(file, { trim: false }); // the cells as written
    } catch (e) {
      throw new FileProblem("The file could not be read as an Excel .xlsx workbook. An old " +
        ".xls file? Save it as .xlsx or CSV in Excel and try again.");
    }
    // read-excel-file 8+ answers every sheet ([{sheet, data}]); older versions the first's rows.
    const rows = Array.isArray(got) && got.length && got[0] && got[0].data ? got[0].data : got;
    if (!rows || !rows.length) throw new FileProblem("The first sheet of the workbook is empty.");
    return { columns: rows[0], rows: rows.slice(1) };
  }

  async function readTable(file) {
    const ext = (file.name.split(".").pop() || "").toLowerCase();
    if (ext === "xls") {
      throw new FileProblem("Old Excel .xls files cannot be read here: save it as .xlsx or CSV.");
    }
    if (ext === "xlsx") return fromXlsx(file);
    const text = decodeText(await file.arrayBuffer());
    if (ext === "json" || ext === "jsonl" || /^\s*[[{]/.test(text)) return fromJson(text);
    return fromCsv(text);
  }

  function cleanTable(table) {
    const seen = new Map();
    const columns = table.columns.map((c, i) => {
      let name = cellText(c).trim() || `column ${i + 1}`;
      const n = (seen.get(name) || 0) + 1;
      seen.set(name, n);
      if (n > 1) name = `${name} (${n})`;
      return name;
    });
    const width = Math.max(columns.length, ...table.rows.map((r) => r.length));
    for (let i = columns.length; i < width; i++) columns.push(`column ${i + 1}`);
    const rows = table.rows.filter((r) => r.some((v) => cellText(v).trim() !== ""));
    if (!rows.length) throw new FileProblem("The file has a header row but no comments under it.");
    return { columns, rows };
  }

  async function onFile(file) {
    if (state.running) {
      setError("file-error", "Wait for the labelling to finish (or cancel it) before " +
        "choosing another file.");
      return;
    }
    setError("file-error", "");
    show($("step-columns"), false);
    show($("step-run"), false);
    show($("results"), false);
    $("file-info").textContent = `Reading ${file.name}…`;
    try {
      const table = cleanTable(await readTable(file));
      state.fileName = file.name;
      state.columns = table.columns;
      state.rows = table.rows;
    } catch (e) {
      $("file-info").textContent = "";
      setError("file-error", e instanceof FileProblem ? e.message
        : `The file could not be read (${e.message || e}).`);
      return;
    }
    $("file-info").textContent = `${file.name}: ${plural(state.rows.length, "row")}, ` +
      `${plural(state.columns.length, "column")}.`;
    await state.modelReady; // the bundle's own column names are the first guesses
    fillPickers();
    show($("step-columns"), true);
    show($("step-run"), true);
    checkColumns();
  }

  // ---------------------------------------------------------------------------------------------
  // Picking columns

  /** What the third column picker is for: "qt" (an NHS bundle: question types), "context"
   *  (a bundle with its own context column) or "" (the bundle reads neither). */
  function contextKind() {
    const m = state.model;
    if (m && m.context) return "context";
    return !m || m.question_types ? "qt" : "";
  }

  /** Header names tried for a picker, in order (compared as `norm` leaves them): the bundle's
   *  own training columns first, then the standard name, then the common ones. */
  function guessesFor(kind) {
    const m = state.model;
    const own = [];
    if (m && m.columns && m.columns[kind]) own.push(m.columns[kind]);
    if (kind === "qt" && contextKind() === "context") {
      return [m.context.column, "context"].map(norm);
    }
    return [...own, STANDARD[kind]].map(norm).concat(GUESSES[kind]);
  }

  function guess(kind) {
    const names = state.columns.map(norm);
    for (const want of guessesFor(kind)) {
      const i = names.indexOf(want);
      if (i >= 0) return String(i);
    }
    return "";
  }

  function fillPickers() {
    const none = {
      id: "(none: number the rows 1, 2, 3…)",
      text: "(choose the column with the comments)",
      qt: contextKind() === "context" ? "(none)" : "(none: nonspecific)",
    };
    for (const kind of ["id", "text", "qt"]) {
      const sel = $(`col-${kind}`);
      sel.replaceChildren(new Option(none[kind], ""),
        ...state.columns.map((c, i) => new Option(c, String(i))));
      sel.value = guess(kind);
    }
    if (!$("col-text").value && state.columns.length === 1) $("col-text").value = "0";
  }

  function picked() {
    const pick = (kind) => ($(`col-${kind}`).value === "" ? -1 : Number($(`col-${kind}`).value));
    return { id: pick("id"), text: pick("text"), qt: contextKind() ? pick("qt") : -1 };
  }

  /** The third picker's role as shown in the preview: "question type" or the context column. */
  function contextRole() {
    return contextKind() === "context" ? state.model.context.column : "question type";
  }

  function renderPreview() {
    const cols = picked();
    const roles = new Map([[cols.id, "id"], [cols.text, "text"], [cols.qt, contextRole()]]);
    const head = document.createElement("tr");
    state.columns.forEach((c, i) => {
      const th = document.createElement("th");
      th.textContent = roles.has(i) ? `${c} → ${roles.get(i)}` : c;
      if (roles.has(i)) th.className = "picked";
      head.appendChild(th);
    });
    const body = state.rows.slice(0, 5).map((r) => {
      const tr = document.createElement("tr");
      state.columns.forEach((_, i) => {
        const td = document.createElement("td");
        const t = cellText(r[i]);
        td.textContent = t.length > 160 ? `${t.slice(0, 160)}…` : t;
        if (i === cols.qt && contextKind() === "qt") { // show what the question counts as
          const as = document.createElement("span");
          as.className = "muted";
          as.textContent = ` → ${questionType(t)}`;
          td.appendChild(as);
        }
        tr.appendChild(td);
      });
      return tr;
    });
    const thead = document.createElement("thead");
    thead.appendChild(head);
    const tbody = document.createElement("tbody");
    tbody.append(...body);
    $("preview").replaceChildren(thead, tbody);
  }

  /** The items to label from the picked columns, or a message saying what is wrong. */
  function buildItems() {
    const cols = picked();
    if (cols.text < 0) return { problem: "Choose the column that holds the comments." };
    if (cols.id >= 0 && cols.id === cols.text) {
      return { problem: "The id and the text must be different columns." };
    }
    const items = [];
    const missing = [];
    state.rows.forEach((r, n) => {
      const id = cols.id < 0 ? String(n + 1) : cellText(r[cols.id]).trim();
      if (!id) missing.push(n + 2); // +1 for the header, +1 to count from 1
      const item = { comment_id: id, comment_text: cellText(r[cols.text]) };
      if (cols.qt >= 0 && contextKind() === "qt") item.question_type = questionType(r[cols.qt]);
      if (cols.qt >= 0 && contextKind() === "context") {
        const value = cellText(r[cols.qt]).trim();
        if (value) item.context = value;
      }
      items.push(item);
    });
    if (missing.length) {
      return { problem: `${plural(missing.length, "row")} ha${missing.length === 1 ? "s" : "ve"} ` +
        `no comment id (row ${missing.slice(0, 10).join(", ")}${missing.length > 10 ? ", …" : ""}` +
        "). Fill them in, or choose \"(none: number the rows…)\" as the id column." };
    }
    const counts = new Map();
    for (const it of items) counts.set(it.comment_id, (counts.get(it.comment_id) || 0) + 1);
    const repeated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    if (repeated.length) {
      return { problem: `Comment ids must be unique; repeated: ${named(repeated)}. Pick another ` +
        "id column, or \"(none: number the rows…)\"." };
    }
    const tooLong = items.filter((it) => it.comment_text.length > state.limits.max_text_chars);
    if (tooLong.length) {
      return { problem: `${plural(tooLong.length, "comment")} longer than ` +
        `${state.limits.max_text_chars.toLocaleString()} characters (the service's limit): ` +
        `${named(tooLong.map((it) => it.comment_id))}. Shorten or remove them.` };
    }
    if (items.some((it) => it.comment_id.length > 256)) {
      return { problem: "Some comment ids are longer than 256 characters: is the id column right?" };
    }
    return { items };
  }

  function checkColumns() {
    renderPreview();
    const built = buildItems();
    state.items = built.items || null;
    setError("columns-error", built.problem || "");
    $("run").disabled = !state.items || state.running;
    $("run").textContent = state.items ? `Label ${plural(state.items.length, "comment")}` : "Label";
  }

  // ---------------------------------------------------------------------------------------------
  // Talking to the service

  class ApiProblem extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /** A person-readable reason from an error response: the API's `detail`, FastAPI's list of
   *  validation errors, or the status in words. Never a stack trace. */
  async function reasonOf(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    const detail = body && (body.detail || body.message || body.error);
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.slice(0, 5).map((d) => {
        const where = (d.loc || []).filter((p) => p !== "body").join(" → ");
        return where ? `${where}: ${d.msg}` : d.msg;
      }).join("; ");
    }
    const words = {
      401: "an API key is needed", 403: "this API key may not do that",
      404: "not found", 413: "too many comments in one request",
      429: "too many requests just now; wait a moment and try again",
      500: "the service had an internal error", 502: "the service could not be reached",
      503: "the service is not available just now", 504: "the service took too long to answer",
    };
    return words[response.status] || `the service answered ${response.status}`;
  }

  async function call(method, path, body) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (state.apiKey) headers["x-api-key"] = state.apiKey;
    let response;
    try {
      response = await fetch(apiUrl(path), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "same-origin",
      });
    } catch (e) {
      throw new ApiProblem(0, "The service could not be reached. Is it still running?");
    }
    return response;
  }

  async function loadLimits() {
    try {
      const r = await fetch(apiUrl("page/limits.json"), { cache: "no-store" });
      if (r.ok) Object.assign(state.limits, await r.json());
    } catch (e) { /* keep the defaults */ }
  }

  async function loadHealth() {
    try {
      const r = await call("GET", "health");
      const body = await r.json();
      if (r.ok && body.model_version) {
        $("model-status").textContent = `Instant model ${body.model_version} ready`;
      } else if (r.status === 503) {
        $("model-status").textContent = `Instant model not available: ${body.reason || ""}`;
      }
    } catch (e) { /* the page still works; errors show when labelling */ }
  }

  /** Read the served bundle (GET v1/models) and fit the page to it. Never fails: without it
   *  (no API key yet, an older service) the page keeps the NHS bundle's defaults. */
  async function loadModel() {
    try {
      const r = await call("GET", "v1/models");
      if (!r.ok) return;
      const before = pickerGuesses();
      state.model = await r.json();
      applyModel(pickerGuesses() !== before);
    } catch (e) {
      console.error(e); // the page keeps its defaults
    }
  }

  /** What the column pickers are for and which names they guess (to redo the guesses only
   *  when the bundle changes them, never undoing a choice made by hand). */
  function pickerGuesses() {
    return JSON.stringify([contextKind(), guessesFor("id"), guessesFor("text"), guessesFor("qt")]);
  }

  /** The page in the served bundle's terms: its sentiment scale, its unlabellable label, the
   *  third column picker (question type, its own context column, or none), the lanes the
   *  service takes its comments on, and the line saying what it labels. */
  function applyModel(guessAgain) {
    const m = state.model;
    const names = m.sentiment_names || [];
    state.nhsScale = names.length === SENTIMENTS.length &&
      names.every((n, i) => n === SENTIMENTS[i].label);
    state.sentiments = state.nhsScale ? SENTIMENTS : names.map((label, i) => (
      { score: i + 1, label, colour: PALETTE[i % PALETTE.length] }));
    state.unlabellable = m.unlabellable || null;

    const kind = contextKind();
    show($("pick-qt"), Boolean(kind));
    show($("qt-help"), kind === "qt");
    show($("context-help"), kind === "context");
    $("qt-name").textContent = kind === "context" ? `Context: ${m.context.column}` : "Question type";
    if (kind === "context") {
      const values = m.context.values || [];
      $("context-help").textContent = `This model also reads the "${m.context.column}" ` +
        "column it was trained with" + (values.length
        ? ` (values: ${values.slice(0, 20).join(", ")}${values.length > 20 ? ", …" : ""})` : "") +
        "; leave it at (none) if your file has no such column.";
    }

    const refused = m.batch_lane_refuses;
    for (const lane of ["batch", "auto"]) {
      document.querySelector(`input[name=lane][value=${lane}]`).disabled = Boolean(refused);
    }
    if (refused) document.querySelector("input[name=lane][value=instant]").checked = true;
    $("lane-note").textContent = refused ? `Batch and Auto are not available for this model: ` +
      `${sentence(refused)}` : "";
    show($("lane-note"), Boolean(refused));

    const themes = m.labels.filter((l) => l !== m.unlabellable);
    const shown = themes.length <= 12 ? `: ${themes.join(", ")}` : "";
    $("model-about").textContent = m.question_types
      ? `twolane labels comments with ${themes.length} themes of the NHS patient-experience ` +
        `framework and a ${names.length}-point sentiment.`
      : `twolane labels comments with this model's ${themes.length} ` +
        `${m.multilabel ? "themes (several per comment)" : "labels (one per comment)"}${shown}` +
        (names.length ? `; sentiment: ${names.join(", ")}.` : "; no sentiment.");
    if (guessAgain && state.columns.length && !state.running) {
      fillPickers();
      checkColumns();
    }
  }

  function askForKey(reason) {
    $("key-reason").textContent = state.apiKey
      ? `That API key was not accepted (${reason}). Enter another.`
      : "This service needs an API key (x-api-key). Enter it once: this page keeps it in " +
        "memory until you leave or reload it.";
    show($("key-form"), true);
    $("api-key").focus();
  }

  function progress(done, total, message) {
    const bar = $("progress");
    show(bar, true);
    bar.max = Math.max(total, 1);
    bar.value = done;
    $("run-status").textContent = message;
  }

  async function runInstant(items) {
    const size = Math.max(1, Math.min(INSTANT_CHUNK, state.limits.max_items));
    const results = [];
    for (let start = 0; start < items.length; start += size) {
      if (state.cancelled) return null;
      progress(start, items.length, `Labelled ${results.length.toLocaleString()} of ` +
        `${items.length.toLocaleString()} comments…`);
      const r = await call("POST", "v1/predict", { items: items.slice(start, start + size) });
      if (!r.ok) throw new ApiProblem(r.status, await reasonOf(r));
      const body = await r.json();
      state.modelVersion = body.model_version;
      results.push(...body.results);
    }
    return results;
  }

  async function pollJob(url, label) {
    for (;;) {
      if (state.cancelled) return null;
      const r = await call("GET", url);
      if (r.status === 200) {
        const body = await r.json();
        if (body.status === "failed") {
          throw new ApiProblem(200, `The batch job failed: ${body.error || "no reason given"}.`);
        }
        return body;
      }
      if (r.status === 202) {
        const s = await r.json();
        const pct = Math.round((s.progress || 0) * 100);
        $("run-status").textContent = `${label}: ${s.status} (${pct}%). The batch model may ` +
          "take a few minutes, longer if it has to start first.";
      } else if (r.status === 503) {
        $("run-status").textContent = `${label}: ${await reasonOf(r)}. Still waiting…`;
      } else if (r.status === 410) {
        throw new ApiProblem(410, "The results of this job were handed out already (to " +
          "another tab or client) and have been deleted. Label the file again.");
      } else {
        throw new ApiProblem(r.status, await reasonOf(r));
      }
      const wait = Number(r.headers.get("retry-after")) || 2;
      await sleep(Math.min(Math.max(wait, 1), 30) * 1000);
    }
  }

  async function runBatch(items, lane = "batch") {
    const size = Math.max(1, state.limits.max_job_items);
    const jobs = [];
    for (let start = 0; start < items.length; start += size) {
      const r = await call("POST", "v1/jobs", { items: items.slice(start, start + size),
        target: "ms", lane });
      if (r.status !== 202) throw new ApiProblem(r.status, await reasonOf(r));
      jobs.push(await r.json());
    }
    const results = [];
    for (const [n, job] of jobs.entries()) {
      const label = jobs.length > 1 ? `Batch job ${n + 1} of ${jobs.length}` : "Batch job";
      progress(n, jobs.length, `${label}: submitted.`);
      const body = await pollJob(job.results_url, label);
      if (body === null) return null;
      state.modelVersion = body.model_version;
      results.push(...body.results);
    }
    return results;
  }

  async function run() {
    if (!state.items || state.running) return;
    setError("run-error", "");
    state.running = true;
    state.cancelled = false;
    state.lane = document.querySelector("input[name=lane]:checked").value;
    $("run").disabled = true;
    show($("cancel"), true);
    show($("results"), false);
    show($("summaries"), false);
    $("theme-cards").replaceChildren();
    $("summary-status").textContent = "";
    $("summary-model").textContent = "";
    setError("summary-error", "");
    show($("dl-md"), false);
    show($("dl-html"), false);
    const items = state.items;
    try {
      const results = state.lane === "instant" ? await runInstant(items)
        : await runBatch(items, state.lane);
      if (results === null) {
        $("run-status").textContent = "Cancelled.";
        return;
      }
      state.texts = new Map(items.map((it) => [it.comment_id, it.comment_text]));
      state.results = results;
      show($("key-form"), false);
      progress(items.length, items.length, `Labelled ${plural(results.length, "comment")}.`);
      showResults();
      checkDrift(items); // advisory: not awaited, never an error on the page
    } catch (e) {
      show($("progress"), false);
      $("run-status").textContent = "";
      // 401: no key or a wrong one (this app); 403: a wrong key (API Gateway's authorizer).
      if (e instanceof ApiProblem && (e.status === 401 || (e.status === 403 && state.apiKey))) {
        askForKey(e.message);
      } else if (e instanceof ApiProblem) {
        const fault = e.status >= 500 && e.status !== 503
          ? " Try again in a moment; if it keeps happening, tell whoever runs this service." : "";
        setError("run-error", sentence(e.message) + fault);
      } else {
        setError("run-error", "Something went wrong in this page while labelling. Reload it " +
          "and try again.");
        console.error(e); // for a developer's console only
      }
    } finally {
      state.running = false;
      show($("cancel"), false);
      $("run").disabled = !state.items;
    }
  }

  // Drift (POST v1/drift): does this file look like the instant model's training data? A random
  // sample of up to DRIFT_SAMPLE comments (and the server's item limit) is compared; the page
  // warns when the answer says "drifted" and says nothing otherwise, or when the check fails.
  const DRIFT_SAMPLE = 2000;
  const DRIFT_SIGNALS = {
    known_share: "fewer of their words are words the model learned",
    length: "their length differs",
    context: "the question types differ",
    top_label: "the themes the model picks differ",
    sentiment: "the sentiment the model gives differs",
    label_confidence: "the model is less (or more) sure of the themes",
    sentiment_confidence: "the model is less (or more) sure of the sentiment",
    junk_share: "more of them are blank or junk answers",
  };

  async function checkDrift(items) {
    const warning = $("drift-warning");
    show(warning, false);
    const n = Math.min(items.length, DRIFT_SAMPLE, state.limits.max_items);
    const sample = items.slice();
    for (let i = 0; i < n; i++) { // partial Fisher-Yates: the first n are a random sample
      const j = i + Math.floor(Math.random() * (sample.length - i));
      [sample[i], sample[j]] = [sample[j], sample[i]];
    }
    try {
      const r = await call("POST", "v1/drift", { items: sample.slice(0, n) });
      if (!r.ok) return;
      const body = await r.json();
      if (!body.drifted) return;
      const why = Object.entries(body.signals).filter(([, s]) => s.drifted)
        .map(([name]) => (name === "context" && contextKind() === "context"
          ? `the ${state.model.context.column} values differ` : DRIFT_SIGNALS[name] || name));
      warning.textContent = "Warning: these comments look unlike the comments the instant " +
        `model was trained on (${why.join("; ")}). Its labels may be less accurate here: ` +
        "check a sample by hand before relying on them.";
      show(warning, true);
    } catch (e) {
      console.error(e); // advisory only: a failed check never disturbs the results
    }
  }

  function sentence(message) {
    const m = message.trim();
    const first = m.charAt(0).toUpperCase() + m.slice(1);
    return /[.!?]$/.test(first) ? first : `${first}.`;
  }

  // ---------------------------------------------------------------------------------------------
  // Results: summary, charts, table, filters

  function themeCounts() {
    const counts = new Map();
    for (const r of state.results) {
      for (const label of r.labels) counts.set(label, (counts.get(label) || 0) + 1);
    }
    return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  }

  function sentimentOf(r) { return r.sentiment ? r.sentiment.score : 0; }

  function themeBySentiment() {
    const table = new Map(); // theme -> [n(no sentiment), n(score 1), .., n(score K)]
    for (const r of state.results) {
      for (const label of r.labels) {
        if (label === state.unlabellable) continue;
        if (!table.has(label)) table.set(label, Array(state.sentiments.length + 1).fill(0));
        table.get(label)[sentimentOf(r)] += 1;
      }
    }
    return table;
  }

  function newChart(key, canvasId, config) {
    if (state.charts[key]) state.charts[key].destroy();
    state.charts[key] = new window.Chart($(canvasId), config);
  }

  /** A long theme name as lines of at most `width` characters (Chart.js draws an array of
   *  strings as a multi-line tick label), so no name is cut off. */
  function wrapLabel(text, width = 32) {
    const lines = [];
    let line = "";
    for (const word of text.split(" ")) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else {
        line = line ? `${line} ${word}` : word;
      }
    }
    lines.push(line);
    return lines.length === 1 ? lines[0] : lines;
  }

  function drawCharts() {
    // The unlabellable label is no theme: the summary line counts it, the filter lists it.
    const themes = themeCounts().filter(([t]) => t !== state.unlabellable);
    $("box-themes").style.height = `${Math.max(12, themes.length * 1.6 + 3)}rem`;
    newChart("themes", "chart-themes", {
      type: "bar",
      data: {
        labels: themes.map(([t]) => wrapLabel(t)),
        datasets: [{ label: "comments", data: themes.map(([, n]) => n), backgroundColor: "#005eb8" }],
      },
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } },
          y: { ticks: { autoSkip: false } } },
        onClick: (_, elements) => {
          if (elements.length) setFilter(themes[elements[0].index][0]);
        },
      },
    });

    const sentiments = state.sentiments;
    show($("box-sentiment").parentElement, sentiments.length > 0);
    const sentimentCounts = sentiments.map((s) =>
      state.results.filter((r) => sentimentOf(r) === s.score).length);
    const none = state.results.filter((r) => !r.sentiment).length;
    const sLabels = sentiments.map((s) => s.label).concat(none ? [NO_SENTIMENT.label] : []);
    newChart("sentiment", "chart-sentiment", {
      type: "bar",
      data: {
        labels: sLabels,
        datasets: [{
          label: "comments",
          data: sentimentCounts.concat(none ? [none] : []),
          backgroundColor: sentiments.map((s) => s.colour).concat([NO_SENTIMENT.colour]),
        }],
      },
      options: {
        maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });

    // NHS scale: themes with the most negative comments first; another scale: the most comments
    const negative = (n) => (state.nhsScale ? n[4] + n[5] : 0);
    const cross = [...themeBySentiment()]
      .sort((a, b) => negative(b[1]) - negative(a[1]) ||
        sum(b[1]) - sum(a[1]) || a[0].localeCompare(b[0]));
    $("box-cross").style.height = `${Math.max(12, cross.length * 1.6 + 5)}rem`;
    const datasets = sentiments.map((s) => ({
      label: s.label, backgroundColor: s.colour, data: cross.map(([, n]) => n[s.score]),
    }));
    if (cross.some(([, n]) => n[0])) {
      datasets.push({ label: NO_SENTIMENT.label, backgroundColor: NO_SENTIMENT.colour,
        data: cross.map(([, n]) => n[0]) });
    }
    newChart("cross", "chart-cross", {
      type: "bar",
      data: { labels: cross.map(([t]) => wrapLabel(t, 60)), datasets },
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "top" } },
        scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
          y: { stacked: true, ticks: { autoSkip: false } } },
        onClick: (_, elements) => {
          if (elements.length) setFilter(cross[elements[0].index][0]);
        },
      },
    });
  }

  function sum(list) { return list.reduce((a, b) => a + b, 0); }

  function fillFilters() {
    const themes = themeCounts();
    $("filter-theme").replaceChildren(
      new Option(`All themes (${state.results.length.toLocaleString()} comments)`, ""),
      ...themes.map(([t, n]) => new Option(`${t} (${n})`, t)));
    const counts = state.sentiments.map((s) =>
      state.results.filter((r) => sentimentOf(r) === s.score).length);
    const both = state.nhsScale ? [new Option("Negative or very negative", "neg"),
      new Option("Positive or very positive", "pos")] : [];
    $("filter-sentiment").replaceChildren(
      new Option("Any sentiment", ""), ...both,
      ...state.sentiments.map((s, i) => new Option(`${s.label} (${counts[i]})`, String(s.score))));
    show($("filter-sentiment").parentElement, state.sentiments.length > 0);
  }

  function setFilter(theme) {
    $("filter-theme").value = theme;
    renderTable();
    $("filter-theme").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  function matches(r, theme, sentiment) {
    if (theme && !r.labels.includes(theme)) return false;
    const s = sentimentOf(r);
    if (sentiment === "neg") return s >= 4;
    if (sentiment === "pos") return s === 1 || s === 2;
    if (sentiment) return s === Number(sentiment);
    return true;
  }

  function renderTable() {
    const theme = $("filter-theme").value;
    const sentiment = $("filter-sentiment").value;
    const rows = state.results.filter((r) => matches(r, theme, sentiment));
    const shown = rows.slice(0, TABLE_ROWS_SHOWN);
    const trs = shown.map((r) => {
      const tr = document.createElement("tr");
      const id = document.createElement("td");
      id.textContent = r.comment_id;
      const text = document.createElement("td");
      text.className = "text";
      text.textContent = state.texts.get(r.comment_id) || "";
      const labels = document.createElement("td");
      for (const label of r.labels) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = label;
        labels.appendChild(tag);
      }
      const sent = document.createElement("td");
      if (r.sentiment) {
        const s = document.createElement("span");
        s.className = `sent sent-${r.sentiment.score}`;
        if (!state.nhsScale) { // the stylesheet's colours are the NHS scale's
          s.className = "sent";
          s.style.background = state.sentiments[r.sentiment.score - 1]?.colour || NO_SENTIMENT.colour;
          s.style.color = "#fff";
        }
        s.textContent = r.sentiment.label;
        sent.appendChild(s);
      }
      tr.append(id, text, labels, sent);
      return tr;
    });
    $("results-table").tBodies[0].replaceChildren(...trs);
    $("filter-count").textContent = `${plural(rows.length, "comment")} shown`;
    $("table-note").textContent = rows.length > shown.length
      ? `The first ${TABLE_ROWS_SHOWN} are listed; the downloads hold all of them.` : "";
  }

  function showResults() {
    const sent = state.results.filter((r) => r.lane === "batch").length;
    const lane = state.lane === "auto"
      ? `cascade (${sent.toLocaleString()} sent to the transformer)`
      : (state.lane === "batch" ? "batch" : "instant");
    const negative = state.results.filter((r) => sentimentOf(r) >= 4).length;
    const unl = state.unlabellable;
    const none = state.results.filter((r) => (unl ? r.labels.includes(unl) : !r.labels.length)).length;
    const perClass = state.sentiments.map((s) => `${s.label} ${state.results.filter((r) =>
      sentimentOf(r) === s.score).length.toLocaleString()}`).join(", ");
    const sentiment = state.nhsScale ? `${plural(negative, "comment")} negative or very negative`
      : (perClass ? `Sentiment: ${perClass}` : "");
    const why = "(empty, a placeholder such as \"n/a\", or too unclear to label)";
    const unlabelled = !none ? "" : (unl ? `${none.toLocaleString()} marked "${unl}" ${why}`
      : `${plural(none, "comment")} with no label ${why}`);
    $("results-summary").textContent = `${plural(state.results.length, "comment")} from ` +
      `${state.fileName} labelled by the ${lane} model ${state.modelVersion}. ` +
      `${[sentiment, unlabelled].filter(Boolean).join("; ")}.`;
    show($("results"), true);
    show($("summaries"), true);
    fillFilters();
    drawCharts();
    renderTable();
  }

  // ---------------------------------------------------------------------------------------------
  // Downloads: ids, labels and sentiment only (as the drop folder writes them), never the text.

  // A cell a spreadsheet would read as a formula (= + - @, tab, CR first) gets a leading "'",
  // as in the drop folder's CSV (twolane.dropfolder.formats.spreadsheet_safe).
  const FORMULA_START = /^[=+\-@\t\r]/;
  function safeCell(v) {
    return typeof v === "string" && FORMULA_START.test(v) ? "'" + v : v;
  }

  function resultRows() {
    return state.results.map((r) => [
      safeCell(r.comment_id),
      r.labels.join(LABEL_SEPARATOR),
      r.sentiment ? r.sentiment.score : "",
      r.sentiment ? r.sentiment.label : "",
    ]);
  }

  const HEADER = ["comment_id", "labels", "sentiment", "sentiment_label"];

  function baseName() {
    return (state.fileName.replace(/\.[^.]*$/, "") || "comments") + ".labels";
  }

  function save(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function downloadCsv() {
    const csv = window.Papa.unparse([HEADER, ...resultRows()], { newline: "\r\n" });
    // The byte-order mark makes Excel read the file as UTF-8.
    save(new Blob(["\ufeff", csv], { type: "text/csv;charset=utf-8" }), `${baseName()}.csv`);
  }

  async function downloadXlsx() {
    const bold = (v) => ({ value: v, fontWeight: "bold" });
    const results = [HEADER.map(bold), ...resultRows().map((row) =>
      row.map((v) => (v === "" ? null : v)))];
    const themes = [
      ["theme", "comments", ...state.sentiments.map((s) => s.label), NO_SENTIMENT.label].map(bold),
      ...[...themeBySentiment()].sort((a, b) => sum(b[1]) - sum(a[1]))
        .map(([t, n]) => [safeCell(t), sum(n), ...n.slice(1), n[0]]),
    ];
    try {
      const blob = await window.writeXlsxFile([
        { data: results, sheet: "results", columns: [{ width: 14 }, { width: 70 }, { width: 10 },
          { width: 18 }] },
        { data: themes, sheet: "themes", columns: [{ width: 50 },
          ...Array(state.sentiments.length + 2).fill({ width: 14 })] },
      ]).toBlob();
      save(blob, `${baseName()}.xlsx`);
    } catch (e) {
      setError("run-error", "The Excel file could not be made in this browser; download the " +
        "CSV instead.");
      console.error(e);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Summaries (POST v1/summaries, then poll): counts from the labels, prose from an LLM

  async function summarise() {
    if (!state.items || state.summarising) return;
    setError("summary-error", "");
    state.summarising = true;
    $("summarise").disabled = true;
    show($("dl-md"), false);
    show($("dl-html"), false);
    $("theme-cards").replaceChildren();
    $("summary-model").textContent = "";
    const size = Math.max(1, state.limits.max_job_items);
    const items = state.items.slice(0, size);
    try {
      $("summary-status").textContent = "Summary job: submitting…";
      const r = await call("POST", "v1/summaries", { items, points_per_theme: 5 });
      if (r.status !== 202) throw new ApiProblem(r.status, await reasonOf(r));
      const job = await r.json();
      state.cancelled = false;
      const body = await pollJob(job.results_url, "Summary job");
      if (body === null) return;
      state.summary = body;
      const cut = state.items.length > items.length
        ? ` (the first ${items.length.toLocaleString()} comments: the service's limit per job)` : "";
      $("summary-status").textContent = `Summarised ${plural(body.themes.length, "theme")}${cut}.`;
      renderSummaries(body);
    } catch (e) {
      $("summary-status").textContent = "";
      const msg = e instanceof ApiProblem ? e.message : "Something went wrong in this page.";
      setError("summary-error", sentence(msg.replace("The batch job failed", "The summary job failed")));
      if (!(e instanceof ApiProblem)) console.error(e);
    } finally {
      state.summarising = false;
      $("summarise").disabled = false;
    }
  }

  // A point's line: "12 comments, 5 negative" (estimated from a sample when the theme is big)
  function pointCounts(t, p) {
    const est = t.sampled < t.comments ? " (estimated from a sample)" : "";
    return `${summaryCounts(p)}${est}`;
  }

  function modelLine(b) {
    const prose = b.llm === "none" ? "No summaries (no language model)" : `Summaries written by ${b.llm}` +
      " and printed only where they pass the checks";
    return `${prose}; themes and counts by the instant model ${b.model_version}; points by ` +
      `${b.points_by}, quotes copied from the comments (personal details removed).`;
  }

  function renderSummaries(body) {
    $("summary-model").textContent = `${modelLine(body)} Check them against the comments before you use them.`;
    const cards = body.themes.map((t) => {
      const card = document.createElement("article");
      card.className = "theme-card";
      const h = document.createElement("h3");
      h.textContent = t.theme;
      const counts = document.createElement("p");
      counts.className = "muted small";
      counts.textContent = summaryCounts(t);
      card.append(h, counts);
      const summary = document.createElement("p");
      if (t.summary) {
        summary.className = "summary";
        summary.textContent = t.summary;
      } else {
        summary.className = "summary withheld";
        summary.textContent = `No summary: ${t.withheld || "no comments"}`;
      }
      card.append(summary);
      const top = Math.max(1, ...t.points.map((p) => p.comments));
      for (const p of t.points) {
        const point = document.createElement("div");
        point.className = "point";
        const label = document.createElement("p");
        label.className = "point-label";
        label.textContent = p.point;
        const bar = document.createElement("div");
        bar.className = "bar";
        const fill = document.createElement("span");
        fill.style.width = `${Math.round((100 * p.comments) / top)}%`;
        const n = document.createElement("span");
        n.className = "bar-count small";
        n.textContent = pointCounts(t, p);
        bar.append(fill);
        const quote = document.createElement("blockquote");
        quote.textContent = `“${p.quote.text}”`;
        const cite = document.createElement("cite");
        cite.textContent = `comment ${p.quote.comment_id}`;
        quote.append(cite);
        point.append(label, bar, n, quote);
        card.append(point);
      }
      if (t.other) {
        const other = document.createElement("p");
        other.className = "muted small";
        other.textContent = `${plural(t.other, "other comment")} in no point`;
        card.append(other);
      }
      return card;
    });
    $("theme-cards").replaceChildren(...cards);
    show($("dl-md"), true);
    show($("dl-html"), true);
  }

  function reportName(ext) {
    return `${(state.fileName.replace(/\.[^.]*$/, "") || "comments")}.summary.${ext}`;
  }

  function downloadMarkdown() {
    const b = state.summary;
    const lines = [`# Comments by theme`, "", `${modelLine(b)}`, ""];
    for (const t of b.themes) {
      lines.push(`## ${t.theme}`, "", `${summaryCounts(t)}.`, "",
        t.summary || `*No summary: ${t.withheld || "no comments"}.*`, "");
      for (const p of t.points) {
        lines.push(`- **${p.point}**: ${pointCounts(t, p)}`, "", `  > ${p.quote.text}`,
          `  > (comment ${p.quote.comment_id})`, "");
      }
      if (t.other) lines.push(`${plural(t.other, "other comment")} in no point.`, "");
    }
    save(new Blob([lines.join("\n")], { type: "text/markdown;charset=utf-8" }), reportName("md"));
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;" })[c]);
  }

  function downloadHtml() {
    const b = state.summary;
    const parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Comments by theme</title>",
      "<style>.withheld{color:#777}.bar{background:#e3e8ec;height:.6em}.bar span{display:block;" +
      "height:100%;background:#2c7fb8}</style></head><body><h1>Comments by theme</h1>",
      `<p>${escapeHtml(modelLine(b))}</p>`];
    for (const t of b.themes) {
      parts.push(`<h2>${escapeHtml(t.theme)}</h2><p>${summaryCounts(t)}.</p>` + (t.summary
        ? `<p>${escapeHtml(t.summary)}</p>`
        : `<p class="withheld">No summary: ${escapeHtml(t.withheld || "no comments")}.</p>`));
      const top = Math.max(1, ...t.points.map((p) => p.comments));
      for (const p of t.points) {
        parts.push(`<h3>${escapeHtml(p.point)}</h3><div class="bar"><span style="width:` +
          `${Math.round((100 * p.comments) / top)}%"></span></div><p>${escapeHtml(pointCounts(t, p))}</p>` +
          `<blockquote>${escapeHtml(p.quote.text)}<br><small>comment ` +
          `${escapeHtml(p.quote.comment_id)}</small></blockquote>`);
      }
      if (t.other) parts.push(`<p>${plural(t.other, "other comment")} in no point.</p>`);
    }
    parts.push("</body></html>");
    save(new Blob([parts.join("\n")], { type: "text/html;charset=utf-8" }), reportName("html"));
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  function init() {
    const drop = $("drop");
    $("file").addEventListener("change", (e) => {
      if (e.target.files.length) onFile(e.target.files[0]);
    });
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
    });
    for (const kind of ["id", "text", "qt"]) $(`col-${kind}`).addEventListener("change", checkColumns);
    $("run").addEventListener("click", run);
    $("cancel").addEventListener("click", () => { state.cancelled = true; });
    $("key-save").addEventListener("click", () => {
      state.apiKey = $("api-key").value.trim();
      if (!state.apiKey) return;
      show($("key-form"), false);
      loadHealth();
      state.modelReady = loadModel();
      state.modelReady.then(run);
    });
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault(); // nothing is sent anywhere: the key stays in this page's memory
      $("key-save").click();
    });
    $("filter-theme").addEventListener("change", renderTable);
    $("filter-sentiment").addEventListener("change", renderTable);
    $("dl-csv").addEventListener("click", downloadCsv);
    $("dl-xlsx").addEventListener("click", downloadXlsx);
    $("summarise").addEventListener("click", summarise);
    $("dl-md").addEventListener("click", downloadMarkdown);
    $("dl-html").addEventListener("click", downloadHtml);
    if (window.Chart) {
      window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
      window.Chart.defaults.color = "#1d2329";
    }
    loadLimits();
    loadHealth();
    state.modelReady = loadModel();
  }

  document.addEventListener("DOMContentLoaded", init);
}());
