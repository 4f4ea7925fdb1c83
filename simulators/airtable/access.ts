/**
 * Personal access tokens: which bases each can see and which scopes it carries (stack.md §1.5). The
 * simulator checks them the way Airtable does: no or unknown token -> 401 AUTHENTICATION_REQUIRED; a
 * base the token cannot see, a base or table that does not exist, or a missing scope -> 403
 * INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND (Airtable does not say which).
 */

export const SCOPES = ['data.records:read', 'data.records:write', 'schema.bases:read', 'schema.bases:write'] as const;
export type Scope = (typeof SCOPES)[number];

export interface TokenSpec {
  token: string;
  /** Default: every scope. */
  scopes?: readonly Scope[];
  /** Base ids the token was granted; default 'all'. */
  bases?: readonly string[] | 'all';
}

interface Grant {
  scopes: ReadonlySet<Scope>;
  bases: ReadonlySet<string> | 'all';
}

export class Tokens {
  private readonly grants = new Map<string, Grant>();

  add(spec: TokenSpec): void {
    this.grants.set(spec.token, {
      scopes: new Set(spec.scopes ?? SCOPES),
      bases: spec.bases === undefined || spec.bases === 'all' ? 'all' : new Set(spec.bases),
    });
  }

  remove(token: string): void {
    this.grants.delete(token);
  }

  known(token: string): boolean {
    return this.grants.has(token);
  }

  scopes(token: string): Scope[] {
    return [...(this.grants.get(token)?.scopes ?? [])];
  }

  canSee(token: string, baseId: string): boolean {
    const grant = this.grants.get(token);
    return grant !== undefined && (grant.bases === 'all' || grant.bases.has(baseId));
  }

  has(token: string, scope: Scope): boolean {
    return this.grants.get(token)?.scopes.has(scope) ?? false;
  }
}
