// What the Bitwarden clients do against a real Vaultwarden, through vaultgate,
// with the clients' own key derivation and encryption (Bitwarden's security
// whitepaper): PBKDF2-SHA256 master key, HKDF-Expand stretching, AES-256-CBC +
// HMAC-SHA256 "type 2" strings, RSA-2048 OAEP for login with device. The
// primitives come from maintained libraries (node's WebCrypto, @noble/hashes),
// never written here.
import { webcrypto as wc, randomUUID, randomBytes } from "node:crypto";
import { pbkdf2 } from "@noble/hashes/pbkdf2";
import { expand } from "@noble/hashes/hkdf";
import { hmac } from "@noble/hashes/hmac";
import { sha256 } from "@noble/hashes/sha256";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

export const base = process.env.VG_URL;
const ITERATIONS = 600000;
const b64 = (u8) => Buffer.from(u8).toString("base64");
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"));

export function log(line) {
  console.log(line);
}

export function fail(why) {
  console.log("FAIL " + why);
  process.exit(1);
}

export function deriveMasterKey(email, password) {
  return pbkdf2(sha256, password, email.trim().toLowerCase(), { c: ITERATIONS, dkLen: 32 });
}

export function masterPasswordHash(masterKey, password) {
  return b64(pbkdf2(sha256, masterKey, password, { c: 1, dkLen: 32 }));
}

// The 64-byte symmetric key (encryption half, MAC half) the master key unlocks.
function stretch(masterKey) {
  const enc = expand(sha256, masterKey, "enc", 32);
  const mac = expand(sha256, masterKey, "mac", 32);
  return concat(enc, mac);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function encrypt(key64, plain) {
  const data = typeof plain === "string" ? new TextEncoder().encode(plain) : plain;
  const iv = new Uint8Array(randomBytes(16));
  const aes = await wc.subtle.importKey("raw", key64.slice(0, 32), "AES-CBC", false, ["encrypt"]);
  const ct = new Uint8Array(await wc.subtle.encrypt({ name: "AES-CBC", iv }, aes, data));
  const mac = hmac(sha256, key64.slice(32), concat(iv, ct));
  return `2.${b64(iv)}|${b64(ct)}|${b64(mac)}`;
}

export async function decrypt(key64, encString) {
  const [type, rest] = encString.split(".");
  if (type !== "2") throw new Error("not a type 2 EncString: " + encString);
  const [iv, ct, mac] = rest.split("|").map(unb64);
  const expected = hmac(sha256, key64.slice(32), concat(iv, ct));
  if (b64(expected) !== b64(mac)) throw new Error("MAC mismatch");
  const aes = await wc.subtle.importKey("raw", key64.slice(0, 32), "AES-CBC", false, ["decrypt"]);
  return new Uint8Array(await wc.subtle.decrypt({ name: "AES-CBC", iv }, aes, ct));
}

export async function rsaKeyPair() {
  const pair = await wc.subtle.generateKey(
    { name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-1" },
    true,
    ["encrypt", "decrypt"],
  );
  const spki = new Uint8Array(await wc.subtle.exportKey("spki", pair.publicKey));
  const pkcs8 = new Uint8Array(await wc.subtle.exportKey("pkcs8", pair.privateKey));
  return { pair, publicKey: b64(spki), pkcs8 };
}

// "4." strings: RSA-2048-OAEP-SHA1, what the apps use to hand a user key to
// another device.
export async function rsaEncrypt(publicKeyB64, data) {
  const key = await wc.subtle.importKey("spki", unb64(publicKeyB64), { name: "RSA-OAEP", hash: "SHA-1" }, false, [
    "encrypt",
  ]);
  return "4." + b64(new Uint8Array(await wc.subtle.encrypt({ name: "RSA-OAEP" }, key, data)));
}

export async function rsaDecrypt(privateKey, encString) {
  if (!encString.startsWith("4.")) throw new Error("not a type 4 EncString: " + encString);
  return new Uint8Array(await wc.subtle.decrypt({ name: "RSA-OAEP" }, privateKey, unb64(encString.slice(2))));
}

async function call(method, path, { token, json, form, headers = {} } = {}) {
  const h = { ...headers, "Device-Type": "9", "Bitwarden-Client-Name": "web", "Bitwarden-Client-Version": "2026.6.0" };
  let body;
  if (token) h.Authorization = "Bearer " + token;
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  if (form) {
    h["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8";
    body = new URLSearchParams(form).toString();
  }
  const resp = await fetch(base + path, { method, headers: h, body });
  const text = await resp.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: resp.status, body: parsed };
}

export async function must(method, path, opts) {
  const r = await call(method, path, opts);
  if (r.status < 200 || r.status > 299) fail(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export { call };

// Registration as the web vault does it, without the web vault.
export async function register(email, password) {
  const masterKey = deriveMasterKey(email, password);
  const userKey = new Uint8Array(randomBytes(64));
  const rsa = await rsaKeyPair();
  await must("POST", "/identity/accounts/register", {
    json: {
      email,
      name: email.split("@")[0],
      masterPasswordHash: masterPasswordHash(masterKey, password),
      masterPasswordHint: null,
      key: await encrypt(stretch(masterKey), userKey),
      kdf: 0,
      kdfIterations: ITERATIONS,
      keys: { publicKey: rsa.publicKey, encryptedPrivateKey: await encrypt(userKey, rsa.pkcs8) },
    },
  });
  return { email, password, userKey };
}

// Prelogin (the KDF settings), then the password grant; the user key is
// decrypted from the token response, as a client unlocks.
export async function login(email, password, deviceId = randomUUID()) {
  const pre = await must("POST", "/identity/accounts/prelogin", { json: { email } });
  if (pre.kdf !== 0 || pre.kdfIterations !== ITERATIONS) fail("prelogin: " + JSON.stringify(pre));
  const masterKey = deriveMasterKey(email, password);
  const hash = masterPasswordHash(masterKey, password);
  const tokens = await must("POST", "/identity/connect/token", {
    form: {
      grant_type: "password",
      username: email,
      password: hash,
      scope: "api offline_access",
      client_id: "web",
      deviceType: "9",
      deviceIdentifier: deviceId,
      deviceName: "chrome",
    },
  });
  const userKey = await decrypt(stretch(masterKey), tokens.Key || tokens.key);
  return { email, password, hash, deviceId, token: tokens.access_token, userKey };
}

export async function newAccount(tag) {
  const email = `${tag}-${randomUUID().slice(0, 8)}@example.com`;
  const password = "correct horse battery staple " + tag;
  const reg = await register(email, password);
  const session = await login(email, password);
  if (b64(session.userKey) !== b64(reg.userKey)) fail("the user key decrypted at login is not the one registered");
  return session;
}

export async function cipherBody(userKey, name) {
  return {
    type: 1,
    name: await encrypt(userKey, name),
    notes: null,
    favorite: false,
    reprompt: 0,
    folderId: null,
    organizationId: null,
    login: { username: await encrypt(userKey, "alice"), password: await encrypt(userKey, "hunter2"), uris: null },
  };
}

// A hub as the Bitwarden apps open it: no negotiate, WebSockets only,
// MessagePack. `mode` "query" puts the token in the query string (browsers),
// "header" sends it as Bearer (Node, desktop).
export async function openHub(path, { token, mode = "query", target = "ReceiveMessage" } = {}) {
  let url = base + path;
  const options = { skipNegotiation: true, transport: signalR.HttpTransportType.WebSockets };
  if (token && mode === "query") url += (url.includes("?") ? "&" : "?") + "access_token=" + token;
  if (token && mode === "header") options.accessTokenFactory = () => token;
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(url, options)
    .withHubProtocol(new MessagePackHubProtocol())
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  const queue = [];
  const waiters = [];
  connection.on(target, (m) => {
    const w = waiters.findIndex((x) => x.test(m));
    if (w >= 0) waiters.splice(w, 1)[0].resolve(m);
    else queue.push(m);
  });
  let stopping = false;
  connection.onclose((e) => {
    if (!stopping) fail(`hub ${path} closed: ${e ? e.message : "no error"}`);
  });
  try {
    await connection.start();
  } catch (e) {
    fail(`hub ${path} start: ${e.message}`);
  }
  return {
    connection,
    // The next message for which test(m) holds (already received or to come).
    next(test, what, ms = 20000) {
      const i = queue.findIndex(test);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
      return new Promise((resolve) => {
        const timer = setTimeout(() => fail(`no ${what} on ${path} within ${ms} ms`), ms);
        waiters.push({ test, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
    async stop() {
      stopping = true;
      await connection.stop();
    },
  };
}

export const isType = (type, id) => (m) => m.Type === type && (!id || (m.Payload && m.Payload.Id === id));
