// Driven by tests/it/vaultwarden.rs against the real Vaultwarden behind vaultgate.
// Env: VG_URL, NODE_EXTRA_CA_CERTS, VG_MODE (one of the functions below).
// Prints one line per step and "OK" at the end; "FAIL why" and exit 1 otherwise.
import { execFileSync } from "node:child_process";
import { randomUUID, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  call, cipherBody, decrypt, encrypt, fail, isType, log, login, must, newAccount, openHub, rsaDecrypt,
  rsaEncrypt, rsaKeyPair,
} from "./bitwarden.mjs";

const SyncCipherUpdate = 0, SyncCipherCreate = 1, SyncLoginDelete = 2, AuthRequest = 15;

const modes = {
  // Registers, logs in, creates a cipher; prints what the Rust side needs to
  // attach files to it: the token, the cipher, and per attachment the file
  // name and file key encrypted as the web vault encrypts them.
  async account() {
    const a = await newAccount("rust");
    const cipher = await must("POST", "/api/ciphers", { token: a.token, json: await cipherBody(a.userKey, "files") });
    const attachments = [];
    for (const name of ["over-http1.bin", "over-http2.bin"]) {
      const fileKey = new Uint8Array(randomBytes(64));
      attachments.push({ fileName: await encrypt(a.userKey, name), key: await encrypt(a.userKey, fileKey) });
    }
    log("ACCOUNT " + JSON.stringify({ token: a.token, cipherId: cipher.id, attachments }));
  },

  // Register, prelogin, login twice (two devices), sync, create, update,
  // delete a cipher; device B's hub (Bearer) and device A's hub (query
  // token) each see what the other device did.
  async life() {
    const a = await newAccount("life");
    log("registered and logged in " + a.email);
    const b = await login(a.email, a.password);
    const hubA = await openHub("/notifications/hub", { token: a.token, mode: "query" });
    const hubB = await openHub("/notifications/hub", { token: b.token, mode: "header" });
    log("hubs connected");
    const sync = await must("GET", "/api/sync?excludeDomains=true", { token: a.token });
    if (sync.profile.email !== a.email || sync.ciphers.length !== 0) fail("sync: " + JSON.stringify(sync.profile));
    log("synced, empty vault");
    const created = await must("POST", "/api/ciphers", { token: a.token, json: await cipherBody(a.userKey, "first") });
    await hubB.next(isType(SyncCipherCreate, created.id), "create notification");
    log("device B's hub got the create");
    await must("PUT", `/api/ciphers/${created.id}`, { token: b.token, json: await cipherBody(b.userKey, "renamed") });
    await hubA.next(isType(SyncCipherUpdate, created.id), "update notification");
    log("device A's hub got the update");
    const again = await must("GET", "/api/sync?excludeDomains=true", { token: a.token });
    const name = new TextDecoder().decode(await decrypt(a.userKey, again.ciphers[0].name));
    if (again.ciphers.length !== 1 || name !== "renamed") fail(`after update: ${again.ciphers.length} ${name}`);
    log("sync decrypts the new name");
    await must("DELETE", `/api/ciphers/${created.id}`, { token: a.token });
    await hubB.next(isType(SyncLoginDelete, created.id), "delete notification");
    log("device B's hub got the delete");
    const last = await must("GET", "/api/sync?excludeDomains=true", { token: b.token });
    if (last.ciphers.length !== 0) fail("deleted cipher still there");
    await hubA.stop();
    await hubB.stop();
  },

  // A hub left alone for VG_IDLE seconds still delivers.
  async idle() {
    const a = await newAccount("idle");
    const hub = await openHub("/notifications/hub", { token: a.token, mode: "header" });
    const seconds = Number(process.env.VG_IDLE || "65");
    log(`hub connected, idle for ${seconds} s`);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    if (hub.connection.state !== "Connected") fail("hub state after idling: " + hub.connection.state);
    const created = await must("POST", "/api/ciphers", { token: a.token, json: await cipherBody(a.userKey, "later") });
    await hub.next(isType(SyncCipherCreate, created.id), "create notification after idling");
    log("notification after idling");
    await hub.stop();
  },

  // Login with device: device B (known to the account, logged out) asks,
  // waits on /notifications/anonymous-hub; device A sees the request on its
  // hub, answers with the user key encrypted to B's public key; B receives
  // the answer, decrypts the user key and logs in with the access code.
  async device() {
    const a = await newAccount("device");
    const deviceB = randomUUID();
    await login(a.email, a.password, deviceB); // B was used before, so it is known
    const hubA = await openHub("/notifications/hub", { token: a.token, mode: "query" });
    const rsa = await rsaKeyPair();
    const accessCode = randomBytes(15).toString("base64url").slice(0, 25);
    const req = await must("POST", "/api/auth-requests", {
      json: { email: a.email, deviceIdentifier: deviceB, publicKey: rsa.publicKey, accessCode, type: 0 },
    });
    log("auth request created");
    const anon = await openHub(`/notifications/anonymous-hub?Token=${req.id}`, { target: "AuthRequestResponseRecieved" });
    log("anonymous hub connected");
    await hubA.next(isType(AuthRequest, req.id), "auth request notification");
    log("device A's hub got the request");
    const pending = await must("GET", `/api/auth-requests/${req.id}`, { token: a.token });
    await must("PUT", `/api/auth-requests/${req.id}`, {
      token: a.token,
      json: {
        deviceIdentifier: a.deviceId,
        key: await rsaEncrypt(pending.publicKey, a.userKey),
        masterPasswordHash: null,
        requestApproved: true,
      },
    });
    log("approved");
    await anon.next(() => true, "answer on the anonymous hub");
    log("device B's anonymous hub got the answer");
    const answer = await must("GET", `/api/auth-requests/${req.id}/response?code=${accessCode}`);
    const userKey = await rsaDecrypt(rsa.pair.privateKey, answer.key);
    if (Buffer.compare(Buffer.from(userKey), Buffer.from(a.userKey)) !== 0) fail("B decrypted another user key");
    const tokens = await must("POST", "/identity/connect/token", {
      form: {
        grant_type: "password", username: a.email, password: accessCode, authRequest: req.id,
        scope: "api offline_access", client_id: "web", deviceType: "9", deviceIdentifier: deviceB, deviceName: "chrome",
      },
    });
    const profile = await must("GET", "/api/accounts/profile", { token: tokens.access_token });
    if (profile.email !== a.email) fail("logged in as " + profile.email);
    log("device B logged in with the access code");
    await anon.stop();
    await hubA.stop();
  },

  // The bw CLI, configured to vaultgate's URL, with its own data folder:
  // API-key login, unlock, create, sync, list, attachment up and down.
  async bw() {
    const a = await newAccount("bw");
    const key = await must("POST", "/api/accounts/api-key", { token: a.token, json: { masterPasswordHash: a.hash } });
    const profile = await must("GET", "/api/accounts/profile", { token: a.token });
    // Another client (web vault crypto, SignalR) watches the same account.
    const hub = await openHub("/notifications/hub", { token: a.token, mode: "query" });
    const dir = mkdtempSync(join(tmpdir(), "vg-bw-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    const env = {
      ...process.env, BITWARDENCLI_APPDATA_DIR: join(dir, "appdata"), BW_CLIENTID: `user.${profile.id}`,
      BW_CLIENTSECRET: key.apiKey, BW_PASSWORD: a.password, BW_NOINTERACTION: "true",
    };
    const bwBin = fileURLToPath(new URL("./node_modules/.bin/bw", import.meta.url));
    const bw = (...args) => {
      try {
        return execFileSync(bwBin, args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
      } catch (e) {
        fail(`bw ${args[0]} ${args[1] || ""}: ${e.stdout} ${e.stderr}`);
      }
    };
    log("bw " + bw("--version"));
    bw("config", "server", process.env.VG_URL);
    bw("login", "--apikey");
    log("bw logged in with the API key");
    env.BW_SESSION = bw("unlock", "--passwordenv", "BW_PASSWORD", "--raw");
    if (!env.BW_SESSION) fail("no session from bw unlock");
    log("bw unlocked");
    const item = { type: 1, name: "from bw", notes: null, favorite: false, reprompt: 0, fields: [],
      login: { username: "bob", password: "s3cret", uris: [] } };
    const created = JSON.parse(bw("create", "item", Buffer.from(JSON.stringify(item)).toString("base64")));
    log("bw created " + created.id);
    await hub.next(isType(SyncCipherCreate, created.id), "bw's create on the other client's hub");
    log("the other client's hub got bw's create");
    bw("sync");
    const items = JSON.parse(bw("list", "items"));
    if (items.length !== 1 || items[0].name !== "from bw" || items[0].login.password !== "s3cret") {
      fail("bw list items: " + JSON.stringify(items));
    }
    log("bw synced and listed the item");
    // What the server stored is ciphertext: the web vault's crypto reads it.
    const sync = await must("GET", "/api/sync?excludeDomains=true", { token: a.token });
    const name = new TextDecoder().decode(await decrypt(a.userKey, sync.ciphers[0].name));
    if (name !== "from bw") fail("another client decrypts the name as " + name);
    const file = join(dir, "attachment.bin");
    const content = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(file, content);
    bw("create", "attachment", "--file", file, "--itemid", created.id);
    log("bw uploaded the attachment");
    bw("sync");
    const back = join(dir, "back.bin");
    bw("get", "attachment", "attachment.bin", "--itemid", created.id, "--output", back);
    if (Buffer.compare(readFileSync(back), content) !== 0) fail("the attachment came back different");
    log("bw downloaded the attachment intact");
    await hub.stop();
  },

  // A failed login, for the client-IP test (Vaultwarden logs the IP).
  async badlogin() {
    const r = await call("POST", "/identity/connect/token", {
      form: {
        grant_type: "password", username: process.env.VG_EMAIL, password: "d3Jvbmc=", scope: "api offline_access",
        client_id: "web", deviceType: "9", deviceIdentifier: randomUUID(), deviceName: "chrome",
      },
    });
    log("status " + r.status);
  },
};

const mode = process.env.VG_MODE;
if (!modes[mode]) fail("unknown VG_MODE " + mode);
setTimeout(() => fail("timed out"), Number(process.env.VG_TIMEOUT || "60") * 1000).unref();
await modes[mode]();
log("OK");
process.exit(0);
