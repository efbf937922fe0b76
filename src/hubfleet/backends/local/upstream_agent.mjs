// Preloaded into the front door's configurable-http-proxy (`node --import <this> <chp> ...`): a keep-alive agent
// for unix-socket targets (the portal).
//
// Why: CHP sends unix-socket targets no agent, so http-proxy-3 marks each upstream request "Connection: close" and
// opens a fresh connection for it. The portal answers and closes; node's last write of a small POST (a sign-in form,
// a hub's token request) can land after that close and fail with EPIPE, which CHP answers as
// "503: Proxy Target Missing". Measured through the front door: about one POST in ten under 20 concurrent clients,
// none for GETs, none with this agent. With keep-alive nobody closes after an answer; node drops an idle connection
// after 4 s, long before the portal would (75 s), so an idle close never races a request either.
// ref: node_modules/configurable-http-proxy/lib/configproxy.js (proxyOptsForTarget: "No need for agents for unix
//      sockets"), node_modules/http-proxy-3/dist/lib/http-proxy/common.js (agent false => connection: close)
import http from "node:http";
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";

// The same module instance CHP's own entry point imports: resolved from the real path of the script being run.
const main = pathToFileURL(realpathSync(process.argv[1]));
const { default: ConfigurableProxy } = await import(new URL("../lib/configproxy.js", main).href);

const unixAgent = new http.Agent({ keepAlive: true, timeout: 4000 });
const proxyOptsForTarget = ConfigurableProxy.prototype.proxyOptsForTarget;
ConfigurableProxy.prototype.proxyOptsForTarget = function (target) {
  const options = proxyOptsForTarget.call(this, target);
  if (target.protocol.startsWith("unix")) options.agent = unixAgent;
  return options;
};
