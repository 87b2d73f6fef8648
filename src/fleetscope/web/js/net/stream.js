// One server-sent-event stream for every instrumentation on the dashboard.

import { api, streamUrl } from "./api.js";

const WATCHDOG_MS = 20000; // no event for this long: ask the server whether it is still there

/**
 * Opens `/api/v1/stream?ids=...` and hands each `value` event to onValue(point). Any error
 * closes it and calls onDown(); the app then checks the server and calls open() again.
 */
export class LiveStream {
  constructor({ onValue, onUp, onDown, onOverflow, onGone }) {
    this.handlers = { onValue, onUp, onDown, onOverflow, onGone };
    this.source = null;
    this.ids = [];
    this.lastId = null;
    this.lastEventAt = 0;
    this.watchdog = setInterval(() => this.check(), 5000);
  }

  /** (Re)open the stream for `ids`; with none, just close it. */
  open(ids = this.ids) {
    this.close();
    this.ids = [...new Set(ids)];
    if (!this.ids.length) return;
    const source = new EventSource(streamUrl(this.ids));
    this.source = source;
    this.lastEventAt = Date.now();
    source.addEventListener("open", () => {
      this.lastEventAt = Date.now();
      this.handlers.onUp?.();
    });
    source.addEventListener("value", (e) => {
      this.lastEventAt = Date.now();
      this.lastId = e.lastEventId;
      this.handlers.onValue(JSON.parse(e.data));
    });
    source.addEventListener("overflow", () => this.handlers.onOverflow?.());
    source.addEventListener("gone", (e) => this.handlers.onGone?.(JSON.parse(e.data).instrumentation));
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      this.close();
      this.handlers.onDown?.();
    });
  }

  /** Same ids as now? Then nothing to do. */
  sameAs(ids) {
    const a = [...new Set(ids)].sort();
    const b = [...this.ids].sort();
    return this.source && a.length === b.length && a.every((x, i) => x === b[i]);
  }

  async check() {
    if (!this.source || Date.now() - this.lastEventAt < WATCHDOG_MS) return;
    const source = this.source;
    if (await api.healthy()) {
      this.lastEventAt = Date.now(); // quiet (coarse granularity), not dead
    } else if (this.source === source) {
      this.close();
      this.handlers.onDown?.();
    }
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }
}
