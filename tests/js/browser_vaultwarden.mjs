// Headless Chromium (Debian's) loads a page from vaultgate in front of the
// real Vaultwarden and, from that page, opens the hub as the web vault does
// (token in the query string, SignalR MessagePack handshake). Another client
// (this Node process, with the web vault's crypto) then creates a cipher and
// the page must receive its notification. Vaultwarden serves no web vault
// here, so the page is Vaultwarden's own /alive answer.
//
// Env: VG_URL, VG_SPKI, VG_CHROMIUM, VG_PAGE (the page's path), NODE_EXTRA_CA_CERTS.
// With client certificates (tests/it/client_certs_vaultwarden.rs): HOME holds
// the NSS database Chromium takes its certificate from; VG_AUTO_SELECT_CERT=1
// has Chromium pick it without asking (what the AutoSelectCertificateForUrls
// policy does, written as the profile's own setting: policies live in /etc);
// VG_EXPECT_PAGE=403 expects the page refused, prints its text and exits 0.
// Prints "protocol h2", "notification <cipher id>", then waits for a line on
// stdin (the Rust test reads vaultgate's access log meanwhile) and exits 0.
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { base, cipherBody, fail, log, must, newAccount } from "./bitwarden.mjs";

setTimeout(() => fail("timed out"), 60000).unref();
const account = await newAccount("chromium");
const profile = mkdtempSync(join(tmpdir(), "vg-chromium-"));
if (process.env.VG_AUTO_SELECT_CERT === "1") {
  // The content setting behind AutoSelectCertificateForUrls: for this origin,
  // any certificate (an empty filter) is chosen without a prompt.
  const exceptions = { [`${new URL(base).origin},*`]: { setting: { filters: [{}] } } };
  mkdirSync(join(profile, "Default"), { recursive: true });
  writeFileSync(join(profile, "Default", "Preferences"),
    JSON.stringify({ profile: { content_settings: { exceptions: { auto_select_certificate: exceptions } } } }));
}
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.VG_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    `--ignore-certificate-errors-spki-list=${process.env.VG_SPKI}`,
  ],
});
const page = browser.pages()[0] || (await browser.newPage());
const response = await page.goto(base + process.env.VG_PAGE);
const expected = Number(process.env.VG_EXPECT_PAGE || "200");
if (response.status() !== expected) fail("page " + response.status() + ": " + (await response.text()));
if (expected !== 200) {
  log("page " + response.status() + ": " + (await response.text()).replace(/\s+/g, " "));
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  log("OK");
  process.exit(0);
}
const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
log("protocol " + protocol);

// In the page: the hub WebSocket, the SignalR MessagePack handshake, then
// collect the binary frames (notifications are MessagePack; the cipher id is
// in them as a plain string).
const opened = await page.evaluate(async (token) => {
  window.frames_ = [];
  const ws = new WebSocket(`wss://${location.host}/notifications/hub?access_token=${token}`);
  ws.binaryType = "arraybuffer";
  window.hub_ = ws;
  return await new Promise((resolve) => {
    ws.onopen = () => ws.send('{"protocol":"messagepack","version":1}\u001e');
    ws.onerror = () => resolve("error");
    ws.onclose = (e) => resolve("close " + e.code);
    ws.onmessage = (m) => {
      const text = typeof m.data === "string" ? m.data : new TextDecoder().decode(m.data);
      window.frames_.push(text);
      if (text === "{}\u001e") resolve("handshake");
    };
  });
}, account.token);
if (opened !== "handshake") fail("hub from the page: " + opened);
log("hub handshake done in the page");

const created = await must("POST", "/api/ciphers", { token: account.token, json: await cipherBody(account.userKey, "seen by chromium") });
try {
  await page.waitForFunction((id) => window.frames_.some((f) => f.includes("ReceiveMessage") && f.includes(id)), created.id, { timeout: 20000 });
} catch {
  fail("no notification in the page; frames: " + JSON.stringify(await page.evaluate(() => window.frames_)));
}
log("notification " + created.id);
log("ready");
const lines = createInterface({ input: process.stdin });
for await (const _ of lines) break;
const state = await page.evaluate(() => window.hub_.readyState);
if (state !== 1) fail("hub closed early: readyState " + state);
await browser.close();
rmSync(profile, { recursive: true, force: true });
log("OK");
process.exit(0);
