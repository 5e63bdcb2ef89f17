// The SignalR client the Bitwarden apps use, configured as they configure it
// (skipNegotiation, WebSockets only, MessagePack), connecting through vaultgate.
//
// Env: VG_URL (https://localhost:PORT), VG_TOKEN_MODE ("query" as browsers
// pass the token, "header" as Node does: Authorization: Bearer),
// NODE_EXTRA_CA_CERTS (the test CA). Prints one line per step; exits 0 when
// a notification pushed by the upstream arrived over a hub that stayed up
// past the client's server timeout (so pings flowed both ways).
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const base = process.env.VG_URL;
const mode = process.env.VG_TOKEN_MODE || "query";
const token = "eyJhbGciOiJub25lIn0.e30.signalr-" + mode;
const url = mode === "query" ? `${base}/notifications/hub?access_token=${token}` : `${base}/notifications/hub`;
const options = { skipNegotiation: true, transport: signalR.HttpTransportType.WebSockets };
if (mode === "header") options.accessTokenFactory = () => token;

const connection = new signalR.HubConnectionBuilder()
  .withUrl(url, options)
  .withHubProtocol(new MessagePackHubProtocol())
  .configureLogging(signalR.LogLevel.Warning)
  .build();
// Short timeouts so the test sees pings flowing in seconds, not minutes: the
// client gives up if it hears nothing for 3 s, and pings every 0.5 s.
connection.serverTimeoutInMilliseconds = 3000;
connection.keepAliveIntervalInMilliseconds = 500;

const fail = (why) => { console.log("FAIL " + why); process.exit(1); };
setTimeout(() => fail("timed out"), 30000);
let stopping = false;
connection.onclose((e) => { if (!stopping) fail("closed: " + (e ? e.message : "no error")); });

const notified = new Promise((resolve) => connection.on("ReceiveMessage", (m) => resolve(m)));
try {
  await connection.start();
} catch (e) {
  fail("start: " + e.message);
}
console.log("connected " + connection.state);
await new Promise((r) => setTimeout(r, 4000));
if (connection.state !== signalR.HubConnectionState.Connected) fail("dropped while idle: " + connection.state);
console.log("still connected after 4 s");
const created = await fetch(`${base}/api/ciphers`, { method: "POST", body: "{}" });
console.log("rest " + created.status);
const message = await notified;
console.log(`notification type ${message.Type} id ${message.Payload && message.Payload.Id}`);
stopping = true;
await connection.stop();
console.log("OK");
process.exit(0);
