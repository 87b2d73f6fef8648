// Pop-up menus anchored to a button; one open at a time, closed by Escape or a click outside.

import { h } from "./dom.js";

let open = null;

export function closeMenu() {
  if (open) {
    open.el.remove();
    open.anchor.setAttribute("aria-expanded", "false");
    open = null;
  }
}

/**
 * Open a menu under `anchor`. items: {label, hint, title, onSelect, disabled, testid} | {heading} | {text}.
 */
export function openMenu(anchor, items, { align = "right" } = {}) {
  const again = open && open.anchor === anchor;
  closeMenu();
  if (again) return null;
  const el = h("div.menu", { role: "menu" }, items.map((item) => {
    if (item.heading) return h("div.menu-heading", {}, item.heading);
    if (item.text) return h("div.menu-text", {}, item.text);
    return h("button.menu-item", {
      role: "menuitem",
      disabled: item.disabled,
      title: item.title,
      dataset: item.testid ? { testid: item.testid } : undefined,
      onclick: (e) => {
        e.stopPropagation();
        closeMenu();
        item.onSelect();
      },
    }, h("span", {}, item.label), item.hint ? h("span.menu-hint", {}, item.hint) : null);
  }));
  document.body.append(el);
  const r = anchor.getBoundingClientRect();
  const w = el.offsetWidth;
  const left = align === "right" ? Math.max(8, r.right - w) : Math.min(r.left, window.innerWidth - w - 8);
  el.style.left = `${left + window.scrollX}px`;
  el.style.top = `${r.bottom + 4 + window.scrollY}px`;
  anchor.setAttribute("aria-expanded", "true");
  open = { el, anchor };
  return el;
}

document.addEventListener("mousedown", (e) => {
  if (open && !open.el.contains(e.target) && !open.anchor.contains(e.target)) closeMenu();
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") closeMenu();
});
