// The `base44:runtime` module that functions import. It forwards to the bridge that the Homebase
// worker host installs on `globalThis.Base44` before the function is loaded.
const bridge = globalThis.Base44;

export const secrets = {
  /** The value of a secret, or `undefined` when it is not set. */
  get(name) {
    return bridge.secrets.get(name);
  },
};

/** Keeps the worker busy with `promise` after the response has been sent; returns the promise. */
export function waitUntil(promise) {
  return bridge.waitUntil(promise);
}

export default { secrets, waitUntil };
