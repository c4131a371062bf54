/**
 * rsync's `--chmod` for the files a puller writes: rules separated by commas, each for directories
 * (`D`), files (`F`) or both, in octal (`D2775`, `F664`) or chmod(1)'s symbolic form (`go+r`,
 * `Dg+s`, `a+X`), applied in order. Pure: parsed once when the config is validated.
 */

/** One rule: what it applies to and how it changes a mode. */
interface Rule {
  readonly on: "file" | "dir" | "both";
  readonly apply: (mode: number, isDir: boolean) => number;
}

/** A parsed `--chmod` value. */
export interface ChmodRules {
  readonly spec: string;
  readonly rules: readonly Rule[];
}

const CLASS_SHIFT = { u: 6, g: 3, o: 0 } as const;

/** Parse "D2775,F664" or "Dg+s,ug+w,Fo-w,+X"; throws an Error naming the bad rule. */
export function parseChmod(spec: string): ChmodRules {
  const rules = spec.split(",").map((raw) => {
    const bad = (why: string) => new Error(`--chmod ${JSON.stringify(spec)}: rule ${JSON.stringify(raw)} ${why} (e.g. D2775,F664 or Dg+s,ug+w,Fo-w,+X)`);
    const on = raw.startsWith("D") ? "dir" : raw.startsWith("F") ? "file" : "both";
    const body = on === "both" ? raw : raw.slice(1);
    if (body === "") throw bad("is empty");
    if (/^[0-7]+$/.test(body)) {
      if (body.length > 4) throw bad("has more than 4 octal digits");
      const m = parseInt(body, 8);
      return { on, apply: () => m } satisfies Rule;
    }
    const sym = /^([ugoa]*)((?:[-+=][rwxXst]*)+)$/.exec(body);
    if (!sym) throw bad("is neither octal nor symbolic (who, +-=, rwxXst)");
    const who = (sym[1] || "a").replace(/a/g, "ugo");
    const ops = [...(sym[2] as string).matchAll(/([-+=])([rwxXst]*)/g)].map((m) => ({ op: m[1] as "+" | "-" | "=", perms: m[2] as string }));
    return {
      on,
      apply: (mode: number, isDir: boolean) => {
        let m = mode;
        for (const { op, perms } of ops) {
          let bits = 0;
          let clear = 0;
          for (const c of new Set(who)) {
            const shift = CLASS_SHIFT[c as keyof typeof CLASS_SHIFT];
            clear |= 0o7 << shift;
            if (perms.includes("r")) bits |= 0o4 << shift;
            if (perms.includes("w")) bits |= 0o2 << shift;
            // X: execute for directories and for files some class may already execute.
            if (perms.includes("x") || (perms.includes("X") && (isDir || (mode & 0o111) !== 0))) bits |= 0o1 << shift;
            if (perms.includes("s") && c === "u") bits |= 0o4000;
            if (perms.includes("s") && c === "g") bits |= 0o2000;
            if (perms.includes("t") && c === "o") bits |= 0o1000;
          }
          if (op === "+") m |= bits;
          else if (op === "-") m &= ~bits;
          else m = (m & ~clear) | bits;
        }
        return m & 0o7777;
      },
    } satisfies Rule;
  });
  return { spec, rules };
}

/** The mode a file or directory gets under `rules`, from the mode it would have had. */
export function applyChmod(rules: ChmodRules, mode: number, kind: "file" | "dir"): number {
  let m = mode & 0o7777;
  for (const r of rules.rules) if (r.on === "both" || r.on === kind) m = r.apply(m, kind === "dir");
  return m;
}
