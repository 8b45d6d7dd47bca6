// Drives Debian's chromium (headless, through playwright-core) over the web
// console for tests/integration/test_95_console.py.  One browser for the
// whole test module; the Python side sends one JSON command a line on stdin
// and reads one JSON answer a line on stdout ({"ok": true, ...} or
// {"ok": false, "error": "..."}), so the test keeps control of the server
// and agents between steps.  Every wait is Playwright's polling with a
// deadline (the command's timeout_ms), never a fixed sleep.  Console
// errors and CSP violations of the page are collected for the `errors`
// command.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const DEFAULT_TIMEOUT = Number(process.env.CONSOLE_TIMEOUT_MS || 15000);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Tests run as root, where chromium's sandbox cannot start.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let context = null;
let page = null;
const errors = [];
// Every answer the pages got (url, status), for the `responses` command.
const responses = [];

async function open(url) {
  if (context) await context.close();
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.setDefaultTimeout(DEFAULT_TIMEOUT);
  page.on("response", (r) => responses.push({ url: r.url(), status: r.status() }));
  page.on("console", (m) => {
    // An answer's status (the 401 that asks for the key) is the test's
    // to check, through `responses`; what counts here is script errors
    // and CSP refusals.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push("pageerror: " + e.message));
  await page.goto(url);
}

// Locators by the console's ids and data attributes (web/app.js).
const card = (name) => page.locator(`section.provider[data-provider="${name}"]`);

const ops = {
  async open(c) {
    await open(c.url);
    return {};
  },
  async login(c) {
    await page.locator("#key-overlay").waitFor({ state: "visible", timeout: c.timeout_ms });
    await page.fill("#key-input", c.key);
    await page.click("#key-submit");
    await page.locator("#key-overlay").waitFor({ state: "hidden", timeout: c.timeout_ms });
    return {};
  },
  async login_refused(c) {
    // A wrong key: the form comes back saying so.
    await page.locator("#key-overlay").waitFor({ state: "visible", timeout: c.timeout_ms });
    await page.fill("#key-input", c.key);
    await page.click("#key-submit");
    const e = page.locator("#key-error");
    await e.waitFor({ state: "visible", timeout: c.timeout_ms });
    return { text: await e.innerText() };
  },
  async key_stored() {
    // Where the key lives: sessionStorage, never localStorage or the URL.
    return await page.evaluate(() => ({
      session: sessionStorage.getItem("shivneri.api_key"),
      local: localStorage.length,
      url: location.href,
    }));
  },
  async go(c) {
    await page.evaluate((h) => {
      location.hash = h;
    }, c.hash);
    return {};
  },
  async wait_card(c) {
    const l = card(c.name).and(page.locator(`[data-state="${c.state}"]`));
    await l.waitFor({ state: "visible", timeout: c.timeout_ms });
    return { text: await l.innerText() };
  },
  async card_action(c) {
    await card(c.name).locator(`button[data-action="${c.action}"]`).click({ timeout: c.timeout_ms });
    return {};
  },
  async compose(c) {
    await page.locator("#compose").waitFor({ timeout: c.timeout_ms });
    for (const [k, v] of Object.entries(c.fields || {})) await page.fill("#f-" + k, v);
    if (c.files)
      await page.setInputFiles(
        "#f-attachments",
        c.files.map((f) => ({ name: f.name, mimeType: f.type, buffer: Buffer.from(f.text) })),
      );
    await page.click("#send");
    return {};
  },
  async sent_id(c) {
    const a = page.locator("#sent-link");
    await a.waitFor({ timeout: c.timeout_ms });
    return { id: await a.innerText() };
  },
  async field_error(c) {
    const e = page.locator("#err-" + c.field);
    await e.waitFor({ state: "visible", timeout: c.timeout_ms });
    // "Next to the field": the error is inside the field's own box.
    const inField = await page.locator(`#field-${c.field} #err-${c.field}`).count();
    return { text: await e.innerText(), in_field: inField === 1 };
  },
  async wait_status(c) {
    await page.locator(`#msg-status[data-status="${c.status}"]`).waitFor({ timeout: c.timeout_ms });
    const outcomes = await page.locator("#timeline li.attempt").evaluateAll((ls) => ls.map((l) => l.dataset.outcome));
    return { outcomes };
  },
  async wait_row(c) {
    const sel = `#queue-rows tr[data-id="${c.id}"]` + (c.status ? `[data-status="${c.status}"]` : "");
    await page.locator(sel).waitFor({ timeout: c.timeout_ms });
    return {};
  },
  async retry_row(c) {
    await page.locator(`#queue-rows tr[data-id="${c.id}"] button.retry`).click({ timeout: c.timeout_ms });
    return {};
  },
  async rows(c) {
    // The queue's rows once the page shows c.page (1-based) and, if given,
    // exactly c.count rows.
    await page.locator("#q-page", { hasText: "page " + (c.page || 1) }).waitFor({ timeout: c.timeout_ms });
    const sel = "#queue-rows tr[data-id]";
    // With c.provider, every row must be that provider's (the filtered
    // view has replaced the one before).
    if (c.count !== undefined)
      await page.waitForFunction(
        ([s, n, p]) => {
          const rs = [...document.querySelectorAll(s)];
          return rs.length === n && (!p || rs.every((r) => r.children[4].textContent === p));
        },
        [sel, c.count, c.provider || null],
        { timeout: c.timeout_ms },
      );
    const rows = await page.locator(sel).evaluateAll((ls) => ls.map((l) => ({ id: l.dataset.id, status: l.dataset.status, provider: l.children[4].textContent })));
    return { rows, older: await page.locator("#q-next").isEnabled(), newer: await page.locator("#q-prev").isEnabled() };
  },
  async select(c) {
    await page.locator(c.selector).selectOption(c.value, { timeout: c.timeout_ms });
    return {};
  },
  async markup_probe(c) {
    // What API text turned into: elements of the given tags inside #main,
    // and whether a handler it carried ever ran.
    await page.locator("#main", { hasText: c.text }).waitFor({ timeout: c.timeout_ms });
    return await page.evaluate((tags) => ({
      found: tags.filter((t) => document.querySelector("#main " + t) !== null),
      ran: window.__console_xss === 1,
    }), c.tags);
  },
  async click(c) {
    await page.locator(c.selector).first().click({ timeout: c.timeout_ms });
    return {};
  },
  async count(c) {
    // How many elements match now (0 is an answer, not a wait).
    return { count: await page.locator(c.selector).count() };
  },
  async text(c) {
    const l = page.locator(c.selector).first();
    await l.waitFor({ timeout: c.timeout_ms });
    return { text: await l.innerText() };
  },
  async wait_live(c) {
    await page.locator(c.off ? "#live.off" : "#live.on").waitFor({ timeout: c.timeout_ms });
    return {};
  },
  async screenshot(c) {
    await page.screenshot({ path: c.path, fullPage: !!c.full });
    return {};
  },
  async quit() {
    return {};
  },
  async errors() {
    return { errors: errors.splice(0) };
  },
  async responses(c) {
    // Every answer so far, once one for c.path (if given) has come: the
    // browser asks for an icon on its own time, after the page loaded.
    if (c.path) {
      const want = (r) => new URL(r.url).pathname === c.path;
      const deadline = Date.now() + c.timeout_ms;
      while (!responses.some(want) && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
    }
    return { responses };
  },
};

const rl = createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: true, ready: true }) + "\n");
for await (const line of rl) {
  let c;
  let answer;
  try {
    c = JSON.parse(line);
    if (!ops[c.op]) throw new Error("unknown op " + c.op);
    c.timeout_ms = c.timeout_ms || DEFAULT_TIMEOUT;
    answer = Object.assign({ ok: true }, await ops[c.op](c));
  } catch (e) {
    answer = { ok: false, error: String((e && e.message) || e).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (c && c.op === "quit") break;
}
// stdin closed or quit: readline would keep the process alive otherwise.
rl.close();
await browser.close();
process.exit(0);
