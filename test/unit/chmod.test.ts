/** rsync's --chmod rules: parsed once, applied per file or directory. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { applyChmod, parseChmod } from "../../src/core/chmod.ts";

test("--chmod: octal and symbolic rules, D/F prefixes, in order, like rsync", () => {
  const cases: [string, number, "file" | "dir", number][] = [
    ["D2775,F664", 0o640, "file", 0o664],
    ["D2775,F664", 0o700, "dir", 0o2775],
    ["F644", 0o755, "dir", 0o755],
    ["go+r", 0o600, "file", 0o644],
    ["Dg+s,ug+w,Fo-w,+X", 0o640, "file", 0o660],
    ["Dg+s,ug+w,Fo-w,+X", 0o750, "dir", 0o2771],
    ["a+X", 0o644, "file", 0o644],
    ["a+X", 0o744, "file", 0o755],
    ["u=rw,go=r", 0o777, "file", 0o644],
    ["o-rwx", 0o777, "dir", 0o770],
  ];
  for (const [spec, mode, kind, want] of cases) assert.equal(applyChmod(parseChmod(spec), mode, kind).toString(8), want.toString(8), `${spec} on ${mode.toString(8)} (${kind})`);
});

test("--chmod: a malformed rule is refused with what is wrong", () => {
  for (const bad of ["", "F99", "D", "x+r", "u+q", "F664,", "7777777"]) assert.throws(() => parseChmod(bad), /--chmod/, bad);
});
