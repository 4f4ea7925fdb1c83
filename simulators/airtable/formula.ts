/**
 * The part of Airtable's formula language that `filterByFormula` needs in practice (stack.md §1.7).
 *
 * Supported:
 * - field references `{Field Name}` (with `\}` for a brace in the name) and bare one-word names;
 * - string literals in single or double quotes with backslash escapes (`\'`, `\"`, `\\`, `\n`, `\t`);
 *   numbers; TRUE / FALSE (with or without parentheses);
 * - operators, loosest first: `=` `!=` `<` `>` `<=` `>=`, then `&` (concatenate), `+` `-`, `*` `/`,
 *   unary `-`; parentheses;
 * - functions: AND, OR, NOT, IF, BLANK, TRUE, FALSE, RECORD_ID, LOWER, UPPER, LEN, TRIM, FIND, SEARCH,
 *   CONCATENATE, IS_BEFORE, IS_AFTER.
 * Anything else (another function, a syntax error, an unknown field) is refused the way Airtable refuses
 * it: 422 INVALID_FILTER_BY_FORMULA.
 *
 * Values: a text-like cell is its text, a number its number, a checkbox true (or empty), a multiple
 * select its names joined with ", ", a date or dateTime its ISO text; an empty cell is BLANK(). String
 * comparison with `=` is exact (case-sensitive). BLANK() equals "", 0 and FALSE(). A record is kept
 * unless the formula gives 0, FALSE, "", NaN or blank (Airtable's rule).
 */
import { errors } from './errors.ts';

export type FormulaValue = string | number | boolean | null;

type Node =
  | { kind: 'literal'; value: FormulaValue }
  | { kind: 'field'; name: string }
  | { kind: 'call'; name: string; args: Node[] }
  | { kind: 'unary'; op: '-'; arg: Node }
  | { kind: 'binary'; op: string; left: Node; right: Node };

/** What evaluating a formula needs from a record. */
export interface FormulaScope {
  /** The value of a field by name; never called for names outside `fieldNames`. */
  field(name: string): FormulaValue;
  recordId: string;
}

const FUNCTIONS: Record<string, { min: number; max: number }> = {
  AND: { min: 1, max: Infinity },
  OR: { min: 1, max: Infinity },
  NOT: { min: 1, max: 1 },
  IF: { min: 2, max: 3 },
  BLANK: { min: 0, max: 0 },
  TRUE: { min: 0, max: 0 },
  FALSE: { min: 0, max: 0 },
  RECORD_ID: { min: 0, max: 0 },
  LOWER: { min: 1, max: 1 },
  UPPER: { min: 1, max: 1 },
  LEN: { min: 1, max: 1 },
  TRIM: { min: 1, max: 1 },
  FIND: { min: 2, max: 3 },
  SEARCH: { min: 2, max: 3 },
  CONCATENATE: { min: 1, max: Infinity },
  IS_BEFORE: { min: 2, max: 2 },
  IS_AFTER: { min: 2, max: 2 },
};

/** A parsed formula, ready to test records. */
export class Formula {
  /** The fields the formula reads. */
  readonly fieldNames: ReadonlySet<string>;

  private constructor(private readonly root: Node) {
    this.fieldNames = collectFields(root);
  }

  /**
   * Parses `text`, checking every field reference against `fieldNames`.
   * @throws AirtableError 422 INVALID_FILTER_BY_FORMULA
   */
  static parse(text: string, fieldNames: ReadonlySet<string>): Formula {
    const parser = new Parser(text);
    const root = parser.parseAll();
    const unknown = [...collectFields(root)].filter((n) => !fieldNames.has(n));
    if (unknown.length > 0) throw errors.invalidFormula(`Unknown field names: ${unknown.join(', ')}`);
    return new Formula(root);
  }

  /**
   * When the formula is `{F}='a'` or `OR({F}='a', {F}='b', ...)` on one field (the lookup a client makes
   * to find records by a key), that field and the texts; otherwise null. Lets a table answer it without
   * evaluating the formula per record.
   */
  equalityLookup(): { field: string; values: ReadonlySet<string> } | null {
    const terms = this.root.kind === 'call' && this.root.name === 'OR' ? this.root.args : [this.root];
    let field: string | null = null;
    const values = new Set<string>();
    for (const term of terms) {
      if (term.kind !== 'binary' || term.op !== '=' || term.left.kind !== 'field' || term.right.kind !== 'literal') return null;
      if (typeof term.right.value !== 'string' || term.right.value === '') return null;
      if (field !== null && term.left.name !== field) return null;
      field = term.left.name;
      values.add(term.right.value);
    }
    return field === null ? null : { field, values };
  }

  /** Whether a record passes the filter. */
  keeps(scope: FormulaScope): boolean {
    return truthy(evaluate(this.root, scope));
  }
}

function collectFields(node: Node, out = new Set<string>()): Set<string> {
  switch (node.kind) {
    case 'field':
      out.add(node.name);
      break;
    case 'call':
      for (const arg of node.args) collectFields(arg, out);
      break;
    case 'unary':
      collectFields(node.arg, out);
      break;
    case 'binary':
      collectFields(node.left, out);
      collectFields(node.right, out);
      break;
    case 'literal':
      break;
  }
  return out;
}

const COMPARISONS = ['<=', '>=', '!=', '=', '<', '>'];

class Parser {
  private pos = 0;

  constructor(private readonly text: string) {}

  parseAll(): Node {
    const node = this.comparison();
    this.space();
    if (this.pos < this.text.length) this.fail(`unexpected "${this.text.slice(this.pos, this.pos + 10)}"`);
    return node;
  }

  private fail(why: string): never {
    throw errors.invalidFormula(`Invalid formula. Please check your formula text. (${why} at character ${this.pos + 1})`);
  }

  private space(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos] as string)) this.pos++;
  }

  private take(token: string): boolean {
    this.space();
    if (this.text.startsWith(token, this.pos)) {
      this.pos += token.length;
      return true;
    }
    return false;
  }

  private comparison(): Node {
    let left = this.concat();
    for (;;) {
      this.space();
      const op = COMPARISONS.find((c) => this.text.startsWith(c, this.pos));
      if (op === undefined) return left;
      this.pos += op.length;
      left = { kind: 'binary', op, left, right: this.concat() };
    }
  }

  private concat(): Node {
    let left = this.additive();
    while (this.take('&')) left = { kind: 'binary', op: '&', left, right: this.additive() };
    return left;
  }

  private additive(): Node {
    let left = this.term();
    for (;;) {
      if (this.take('+')) left = { kind: 'binary', op: '+', left, right: this.term() };
      else if (this.take('-')) left = { kind: 'binary', op: '-', left, right: this.term() };
      else return left;
    }
  }

  private term(): Node {
    let left = this.unary();
    for (;;) {
      if (this.take('*')) left = { kind: 'binary', op: '*', left, right: this.unary() };
      else if (this.take('/')) left = { kind: 'binary', op: '/', left, right: this.unary() };
      else return left;
    }
  }

  private unary(): Node {
    if (this.take('-')) return { kind: 'unary', op: '-', arg: this.unary() };
    return this.primary();
  }

  private primary(): Node {
    this.space();
    const ch = this.text[this.pos];
    if (ch === undefined) this.fail('unexpected end of formula');
    if (ch === '(') {
      this.pos++;
      const inner = this.comparison();
      if (!this.take(')')) this.fail('missing ")"');
      return inner;
    }
    if (ch === "'" || ch === '"') return { kind: 'literal', value: this.string(ch) };
    if (ch === '{') return { kind: 'field', name: this.fieldName() };
    const number = /^\d+(\.\d+)?([eE][+-]?\d+)?/.exec(this.text.slice(this.pos));
    if (number) {
      this.pos += number[0].length;
      return { kind: 'literal', value: Number(number[0]) };
    }
    const ident = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.text.slice(this.pos));
    if (!ident) this.fail(`unexpected "${ch}"`);
    this.pos += ident[0].length;
    const name = ident[0];
    if (this.take('(')) return this.call(name.toUpperCase());
    if (/^(true|false)$/i.test(name)) return { kind: 'literal', value: name.toLowerCase() === 'true' };
    return { kind: 'field', name };
  }

  private call(name: string): Node {
    const spec = FUNCTIONS[name];
    if (spec === undefined) this.fail(`unknown function ${name}()`);
    const args: Node[] = [];
    if (!this.take(')')) {
      do args.push(this.comparison());
      while (this.take(','));
      if (!this.take(')')) this.fail(`missing ")" after the arguments of ${name}()`);
    }
    if (args.length < spec.min || args.length > spec.max) this.fail(`${name}() takes ${spec.min === spec.max ? spec.min : `${spec.min} or more`} arguments, got ${args.length}`);
    return { kind: 'call', name, args };
  }

  private string(quote: string): string {
    this.pos++;
    let out = '';
    for (;;) {
      const ch = this.text[this.pos++];
      if (ch === undefined) this.fail('unterminated string');
      if (ch === quote) return out;
      if (ch === '\\') {
        const next = this.text[this.pos++];
        if (next === undefined) this.fail('unterminated string');
        out += next === 'n' ? '\n' : next === 't' ? '\t' : next;
      } else {
        out += ch;
      }
    }
  }

  private fieldName(): string {
    this.pos++;
    let out = '';
    for (;;) {
      const ch = this.text[this.pos++];
      if (ch === undefined) this.fail('unterminated field reference');
      if (ch === '}') return out;
      if (ch === '\\' && this.text[this.pos] === '}') {
        out += '}';
        this.pos++;
      } else {
        out += ch;
      }
    }
  }
}

function truthy(value: FormulaValue): boolean {
  if (value === null || value === false || value === '' || value === 0) return false;
  if (typeof value === 'number' && Number.isNaN(value)) return false;
  return true;
}

const text = (v: FormulaValue): string => (v === null ? '' : typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
const num = (v: FormulaValue): number => (v === null || v === '' ? 0 : typeof v === 'boolean' ? (v ? 1 : 0) : Number(v));

// Module-level helpers, not closures made per call: under tsx (esbuild keepNames) every function
// expression created costs a defineProperty, which dominated formula evaluation.
function blankish(v: FormulaValue): boolean {
  return v === null || v === '' || v === 0 || v === false;
}

function equal(a: FormulaValue, b: FormulaValue): boolean {
  if (a === null || b === null) return blankish(a) && blankish(b);
  if (typeof a === 'string' && typeof b === 'string') return a === b;
  if (typeof a === 'string' || typeof b === 'string') return text(a) === text(b);
  return num(a) === num(b);
}

function order(a: FormulaValue, b: FormulaValue): number {
  if (typeof a === 'string' && typeof b === 'string' && (Number.isNaN(Number(a)) || Number.isNaN(Number(b)) || a === '' || b === '')) {
    return a < b ? -1 : a > b ? 1 : 0;
  }
  return num(a) - num(b);
}

function instant(v: FormulaValue): number {
  return typeof v === 'number' ? v : Date.parse(text(v));
}

function evaluate(node: Node, scope: FormulaScope): FormulaValue {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'field':
      return scope.field(node.name);
    case 'unary':
      return -num(evaluate(node.arg, scope));
    case 'binary': {
      const a = evaluate(node.left, scope);
      const b = evaluate(node.right, scope);
      switch (node.op) {
        case '=':
          return equal(a, b);
        case '!=':
          return !equal(a, b);
        case '<':
          return order(a, b) < 0;
        case '>':
          return order(a, b) > 0;
        case '<=':
          return order(a, b) <= 0;
        case '>=':
          return order(a, b) >= 0;
        case '&':
          return text(a) + text(b);
        case '+':
          return num(a) + num(b);
        case '-':
          return num(a) - num(b);
        case '*':
          return num(a) * num(b);
        case '/':
          return num(a) / num(b);
        default:
          return null;
      }
    }
    case 'call':
      return call(node.name, node.args, scope);
  }
}

function call(name: string, args: Node[], scope: FormulaScope): FormulaValue {
  switch (name) {
    case 'AND':
      for (const a of args) if (!truthy(evaluate(a, scope))) return false;
      return true;
    case 'OR':
      for (const a of args) if (truthy(evaluate(a, scope))) return true;
      return false;
    case 'NOT':
      return !truthy(evaluate(args[0] as Node, scope));
    case 'IF':
      return truthy(evaluate(args[0] as Node, scope)) ? evaluate(args[1] as Node, scope) : args.length > 2 ? evaluate(args[2] as Node, scope) : null;
    case 'BLANK':
      return null;
    case 'TRUE':
      return true;
    case 'FALSE':
      return false;
    case 'RECORD_ID':
      return scope.recordId;
    case 'LOWER':
      return text(evaluate(args[0] as Node, scope)).toLowerCase();
    case 'UPPER':
      return text(evaluate(args[0] as Node, scope)).toUpperCase();
    case 'LEN':
      return text(evaluate(args[0] as Node, scope)).length;
    case 'TRIM':
      return text(evaluate(args[0] as Node, scope)).trim();
    case 'FIND':
    case 'SEARCH': {
      const needle = text(evaluate(args[0] as Node, scope));
      const haystack = text(evaluate(args[1] as Node, scope));
      const from = args.length > 2 ? Math.max(0, num(evaluate(args[2] as Node, scope)) - 1) : 0;
      const found = name === 'FIND' ? haystack.indexOf(needle, from) : haystack.toLowerCase().indexOf(needle.toLowerCase(), from);
      return found === -1 ? (name === 'FIND' ? 0 : null) : found + 1;
    }
    case 'CONCATENATE':
      return args.map((a) => text(evaluate(a, scope))).join('');
    case 'IS_BEFORE':
      return instant(evaluate(args[0] as Node, scope)) < instant(evaluate(args[1] as Node, scope));
    case 'IS_AFTER':
      return instant(evaluate(args[0] as Node, scope)) > instant(evaluate(args[1] as Node, scope));
    default:
      return null;
  }
}
