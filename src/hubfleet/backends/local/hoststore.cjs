// The front door's route table: configurable-http-proxy's --storage-backend, for --host-routing with wildcards.
//
// With --host-routing, CHP looks a request up as "/<host>/<path>" in a prefix trie, so a route "/tm351.localhost"
// matches that one host only. Each hub's students are on hosts below it ("alice.tm351.localhost", JupyterHub's user
// subdomains), which come and go with every spawn and are routed by the hub's own proxy. This store answers for
// them from the hub's route when that route was added with {"subdomains": true}: exact host first, then the host one
// label up (only if that route opted in), then the default route "/". Everything else is CHP's MemoryStore contract.
// ref: https://github.com/jupyterhub/configurable-http-proxy#command-line-options (--storage-backend, --host-routing)
"use strict";

function clean(path) {
  // Same normal form as CHP's trie.trimPrefix: a leading "/", no trailing "/" (except the root).
  if (!path.startsWith("/")) path = "/" + path;
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  return path;
}

class HostStore {
  constructor() {
    this.routes = {};
  }

  cleanPath(path) {
    return clean(path);
  }

  get(path) {
    return Promise.resolve(this.routes[clean(path)]);
  }

  getAll() {
    return Promise.resolve(this.routes);
  }

  add(path, data) {
    this.routes[clean(path)] = data;
    return Promise.resolve(null);
  }

  update(path, data) {
    Object.assign(this.routes[clean(path)], data);
    return Promise.resolve(null);
  }

  remove(path) {
    path = clean(path);
    const route = this.routes[path];
    delete this.routes[path];
    return Promise.resolve(route);
  }

  getTarget(path) {
    const host = (path.split("/")[1] || "").toLowerCase();
    const at = (prefix) => (this.routes[prefix] ? { prefix, data: this.routes[prefix] } : undefined);
    let found = host ? at("/" + host) : undefined;
    const dot = host.indexOf(".");
    if (!found && dot > 0) {
      const parent = at("/" + host.slice(dot + 1));
      if (parent && parent.data.subdomains) found = parent;
    }
    return Promise.resolve(found || at("/"));
  }
}

module.exports = HostStore;
