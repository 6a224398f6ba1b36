import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Handlebars from "handlebars";

/** templates/ shipped with edgec; the only module that touches Handlebars. */
export const TEMPLATES_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "templates");

const cache = new Map<string, HandlebarsTemplateDelegate>();

/** Renders templates/<path>.hbs with a precomputed view-model (no logic lives in templates). */
export function renderTemplate(path: string, view: object): string {
  let t = cache.get(path);
  if (!t) {
    t = Handlebars.compile(readFileSync(join(TEMPLATES_DIR, `${path}.hbs`), "utf8"), { noEscape: true, strict: true });
    cache.set(path, t);
  }
  return t(view);
}
