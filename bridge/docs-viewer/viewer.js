// Kumo API reference: renders the OpenAPI documents the bridge serves
// (/1/openapi.json, /v1/openapi.json) and the markdown reference pages
// (/docs/ref/…). Plain DOM, no innerHTML: every text is a text node.

const DOCS = [
  { id: "1", title: "Nature-compatible /1", url: "/1/openapi.json" },
  { id: "v1", title: "Kumo /v1", url: "/v1/openapi.json" },
];
const METHODS = ["get", "post", "put", "patch", "delete"];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const filter = document.getElementById("filter");
const cache = new Map();

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Text with `code` spans, **bold** and [links](url) (same-site or http(s) only).
function inline(text) {
  const out = [];
  const re = /`([^`]*)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  for (const m of String(text ?? "").matchAll(re)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1] !== undefined) out.push(h("code", {}, m[1]));
    else if (m[2] !== undefined) out.push(h("strong", {}, m[2]));
    else {
      const href = safeHref(m[4]);
      out.push(...(href ? [h("a", { href }, inline(m[3]))] : inline(m[3])));
    }
    last = m.index + m[0].length;
  }
  if (last < String(text ?? "").length) out.push(String(text).slice(last));
  return out;
}

function safeHref(url) {
  if (/^(https?:|#|\/)/.test(url)) return url;
  // Links between reference pages (`scopes.md`, `config.md#bridge`).
  const page = url.match(/^(?:\.\/|docs\/)?([a-z0-9-]+)\.md(#.*)?$/);
  if (page) return `#/ref/${page[1]}`;
  // A file of the repository the bridge does not serve: shown as its path.
  return null;
}

async function load(url, as = "json") {
  if (!cache.has(url)) {
    cache.set(url, fetch(url).then((r) => {
      if (!r.ok) throw new Error(`${url}: ${r.status}`);
      return as === "json" ? r.json() : r.text();
    }));
  }
  return cache.get(url);
}

function resolve(doc, ref) {
  return ref.replace(/^#\//, "").split("/").reduce((o, k) => o?.[k], doc);
}

function refName(ref) {
  return ref.split("/").pop();
}

// A schema's type, with links to component schemas.
function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return h("a", { href: `#schema-${refName(schema.$ref)}` }, refName(schema.$ref));
  if (schema.allOf) return [schema.allOf.map(typeOf).flatMap((t, i) => (i ? [" + ", t] : [t]))];
  if (schema.oneOf || schema.anyOf) {
    return (schema.oneOf || schema.anyOf).map(typeOf).flatMap((t, i) => (i ? [" | ", t] : [t]));
  }
  if (schema.type === "array") return ["array of ", typeOf(schema.items)];
  if (schema.type === "object" && schema.additionalProperties) {
    return ["map of ", typeOf(schema.additionalProperties)];
  }
  let t = schema.type || "any";
  if (schema.format) t += ` (${schema.format})`;
  if (schema.enum) t += `: ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`;
  if (schema.nullable) t += ", nullable";
  return t;
}

function propertiesTable(doc, schema) {
  let s = schema?.$ref ? resolve(doc, schema.$ref) : schema;
  if (!s) return null;
  const props = {};
  const required = new Set(s.required || []);
  for (const part of s.allOf || [s]) {
    const p = part.$ref ? resolve(doc, part.$ref) : part;
    Object.assign(props, p.properties || {});
    (p.required || []).forEach((r) => required.add(r));
  }
  const rows = Object.entries(props);
  if (!rows.length) return h("p", { class: "muted" }, inline(s.description || `Type: ${typeOf(s)}`));
  return h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Type"), h("th", {}, "Description"))),
    h("tbody", {}, rows.map(([name, p]) => h("tr", {},
      h("td", {}, h("code", {}, name), required.has(name) ? h("span", { class: "req" }, " required") : null),
      h("td", {}, typeOf(p)),
      h("td", {}, inline(p.description || (p.$ref ? resolve(doc, p.$ref)?.description : "") || ""))))));
}

function operation(doc, path, method, op) {
  const body = h("div");
  if (op.description) body.append(h("p", {}, inline(op.description)));
  const params = [...(doc.paths[path].parameters || []), ...(op.parameters || [])]
    .map((p) => (p.$ref ? resolve(doc, p.$ref) : p));
  if (params.length) {
    body.append(h("h3", {}, "Parameters"), h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "In"), h("th", {}, "Type"), h("th", {}, "Description"))),
      h("tbody", {}, params.map((p) => h("tr", {},
        h("td", {}, h("code", {}, p.name), p.required ? h("span", { class: "req" }, " required") : null),
        h("td", {}, p.in), h("td", {}, typeOf(p.schema)), h("td", {}, inline(p.description || "")))))));
  }
  if (op.requestBody) {
    for (const [type, media] of Object.entries(op.requestBody.content || {})) {
      body.append(h("h3", {}, "Request body ", h("code", {}, type)));
      if (op.requestBody.description) body.append(h("p", {}, inline(op.requestBody.description)));
      body.append(propertiesTable(doc, media.schema) || "");
    }
  }
  body.append(h("h3", {}, "Responses"));
  const rows = Object.entries(op.responses || {}).map(([status, r]) => {
    const resp = r.$ref ? resolve(doc, r.$ref) : r;
    const media = Object.values(resp.content || {})[0];
    return h("tr", {}, h("td", {}, h("code", {}, status)), h("td", {}, typeOf(media?.schema)),
      h("td", {}, inline(resp.description || "")));
  });
  body.append(h("table", {}, h("tbody", {}, rows)));
  const text = `${method} ${path} ${op.summary || ""} ${op.description || ""}`.toLowerCase();
  return h("details", { class: "op", "data-text": text, id: `op-${method}-${path}` },
    h("summary", {}, h("span", { class: `method ${method}` }, method), h("span", { class: "path" }, path),
      h("span", { class: "muted" }, op.summary || "")),
    body);
}

async function showDoc(id) {
  const meta = DOCS.find((d) => d.id === id) || DOCS[0];
  const doc = await load(meta.url);
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = item[method].tags?.[0] || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, item[method]));
    }
  }
  const tagInfo = new Map((doc.tags || []).map((t) => [t.name, t.description]));
  const schemas = Object.entries(doc.components?.schemas || {});
  main.replaceChildren(
    h("section", { class: "card" }, h("h1", {}, doc.info.title),
      h("p", {}, inline(doc.info.description || "")),
      h("p", { class: "muted" }, "OpenAPI ", doc.openapi, " document: ", h("a", { href: meta.url }, meta.url))),
    ...[...byTag].map(([tag, ops]) => h("section", {}, h("h2", {}, tag),
      tagInfo.get(tag) ? h("p", { class: "muted" }, inline(tagInfo.get(tag))) : null, ops)),
    h("section", { class: "card" }, h("h2", {}, "Schemas"),
      schemas.map(([name, s]) => h("div", { id: `schema-${name}` }, h("h3", {}, name),
        s.description ? h("p", {}, inline(s.description)) : null, propertiesTable(doc, s)))),
  );
  applyFilter();
}

// A small markdown renderer for the reference pages: headings, paragraphs,
// lists, fenced code, tables.
function markdown(text) {
  const out = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      i++;
      out.push(h("pre", {}, h("code", {}, code.join("\n"))));
    } else if (/^#{1,6} /.test(line)) {
      const level = Math.min(line.indexOf(" "), 3);
      const title = line.slice(line.indexOf(" ") + 1);
      out.push(h(`h${level}`, { id: title.toLowerCase().replace(/[^a-z0-9]+/g, "-") }, inline(title)));
      i++;
    } else if (line.startsWith("|")) {
      const rows = [];
      for (; i < lines.length && lines[i].startsWith("|"); i++) {
        if (/^\|[\s:|-]+\|?$/.test(lines[i])) continue;
        rows.push(lines[i].replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|")));
      }
      const [head, ...body] = rows;
      out.push(h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, inline(c))))),
        h("tbody", {}, body.map((r) => h("tr", {}, r.map((c) => h("td", {}, inline(c))))))));
    } else if (/^\s*([-*]|\d+\.) /.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items = [];
      for (; i < lines.length && /^\s*([-*]|\d+\.) /.test(lines[i]); i++) {
        let item = lines[i].replace(/^\s*([-*]|\d+\.) /, "");
        while (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1]) && !/^\s*([-*]|\d+\.) /.test(lines[i + 1])) {
          item += " " + lines[++i].trim();
        }
        items.push(h("li", {}, inline(item)));
      }
      out.push(h(ordered ? "ol" : "ul", {}, items));
    } else if (line.trim() === "") {
      i++;
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() !== "" && !/^(#|```|\||\s*[-*] |\s*\d+\. )/.test(lines[i]); i++) {
        para.push(lines[i]);
      }
      out.push(h("p", {}, inline(para.join(" "))));
    }
  }
  return out;
}

async function showRef(name) {
  const text = await load(`/docs/ref/${name}.md`, "text");
  main.replaceChildren(h("section", { class: "card md" }, markdown(text)));
}

function applyFilter() {
  const q = filter.value.trim().toLowerCase();
  for (const el of main.querySelectorAll("details.op")) {
    el.hidden = q !== "" && !el.dataset.text.includes(q);
  }
}

async function route() {
  // `#schema-…` and `#op-…` are anchors on the page shown; only `#/…` routes.
  if (location.hash && !location.hash.startsWith("#/")) return;
  const [, kind = "1", name] = location.hash.split("/");
  for (const a of nav.querySelectorAll("a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#/${kind}${name ? `/${name}` : ""}`);
  }
  filter.hidden = kind === "ref";
  try {
    if (kind === "ref" && name) await showRef(name);
    else await showDoc(kind);
  } catch (e) {
    main.replaceChildren(h("p", { class: "notice" }, `Could not load: ${e.message}`));
  }
}

async function start() {
  const pages = await load("/docs/ref/index.json").catch(() => []);
  nav.replaceChildren(
    ...DOCS.map((d) => h("a", { href: `#/${d.id}` }, d.title)),
    ...pages.map((p) => h("a", { href: `#/ref/${p.name}` }, p.title)),
  );
  filter.addEventListener("input", applyFilter);
  window.addEventListener("hashchange", route);
  await route();
}

start();
