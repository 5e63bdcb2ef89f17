// Headless Chromium (Debian's, never a downloaded one) loads a page through
// vaultgate that opens the hub WebSocket, does the SignalR handshake, pings,
// creates a cipher over REST and receives its notification.
//
// Env: VG_URL, VG_SPKI (base64 SHA-256 of the server key, so Chromium trusts
// the test certificate), VG_HTTP1=1 to forbid HTTP/2. Prints "ready" once the
// notification has arrived with the hub still open, then waits for a line on
// stdin (the Rust test counts TCP connections meanwhile) and exits 0.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const args = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check",
  `--ignore-certificate-errors-spki-list=${process.env.VG_SPKI}`,
];
if (process.env.VG_HTTP1 === "1") args.push("--disable-http2");

const fail = async (why, browser) => { console.log("FAIL " + why); if (browser) await browser.close(); process.exit(1); };
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "vg-chromium-")), {
  executablePath: process.env.VG_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args,
});
const page = browser.pages()[0] || (await browser.newPage());
const response = await page.goto(`${process.env.VG_URL}/hub-test.html`);
console.log(`page ${response.status()} ${await response.headerValue(":status") ?? ""}`.trim());
try {
  await page.waitForFunction(() => window.hubDone === true, null, { timeout: 20000 });
} catch (e) {
  await fail("no notification; events: " + JSON.stringify(await page.evaluate(() => window.hubEvents)), browser);
}
const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
console.log("events " + JSON.stringify(await page.evaluate(() => window.hubEvents)));
console.log("protocol " + protocol);
console.log("ready");
const lines = createInterface({ input: process.stdin });
for await (const _ of lines) break;
const events = await page.evaluate(() => window.hubEvents);
if (events.some((e) => e.startsWith("close") || e === "error")) await fail("hub closed early: " + JSON.stringify(events), browser);
await browser.close();
console.log("OK");
process.exit(0);
