// Preloaded (node --require) into every outside verifier the test runs:
// refuses any network connection that does not go to this machine's
// loopback, so that a verifier which tries to reach its vendor's trust
// registry fails loudly instead of sending traffic off the machine.
'use strict';
const net = require('node:net');

const refused = [];
const loopback = /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i;
const connect = net.Socket.prototype.connect;

net.Socket.prototype.connect = function (...args) {
  const first = args[0];
  let host = 'localhost';
  if (Array.isArray(first)) return connect.apply(this, args); // internal normalized form
  if (first && typeof first === 'object') {
    if (first.path) return connect.apply(this, args); // unix socket
    host = first.host || 'localhost';
  } else if (typeof args[1] === 'string') {
    host = args[1];
  }
  if (!loopback.test(host)) {
    refused.push(host);
    const err = new Error(`loopback-only: refused a connection to ${host}`);
    process.nextTick(() => this.destroy(err));
    return this;
  }
  return connect.apply(this, args);
};

// The runner prints these with its results; any entry fails the test.
globalThis.__refusedConnections = refused;
