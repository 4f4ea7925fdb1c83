/**
 * The simulator's state: bases, their tables (schema and records), in memory.
 *
 * Records keep their cells by field id, so a field's name is only a label, as in Airtable. A table's
 * `records` map is in creation order, which is the order lists return when no sort is asked for.
 * Writes never edit a stored record in place: a request builds its changes on a `Staging` copy and
 * commits them all at once, so a request that fails half-way (an unknown field in its 7th record, an
 * upsert matching two records) changes nothing, as in Airtable.
 */
import type { SimClock } from '../common.ts';
import { errors } from './errors.ts';
import { buildField, choicesOf, fromCell, isComputed, newId, type Cell, type Choice, type FieldModel } from './fields.ts';

export interface ViewModel {
  id: string;
  name: string;
  type: 'grid';
}

export interface SimRecord {
  id: string;
  /** Epoch ms. */
  createdTime: number;
  /** Epoch ms of the last write that changed a cell. */
  modifiedTime: number;
  /** Stored cells by field id; empty cells are absent. */
  cells: Map<string, Cell>;
  /** The autoNumber value, from 1 in creation order. */
  number: number;
}

export interface SimTable {
  id: string;
  name: string;
  description?: string;
  fields: FieldModel[];
  views: ViewModel[];
  records: Map<string, SimRecord>;
  nextNumber: number;
}

export interface SimBase {
  id: string;
  name: string;
  tables: SimTable[];
}

/** A table as the metadata API shows it. */
export interface TableModel {
  id: string;
  name: string;
  description?: string;
  primaryFieldId: string;
  fields: FieldModel[];
  views: ViewModel[];
}

/** A record as the records API shows it. */
export interface ApiRecord {
  id: string;
  createdTime: string;
  fields: Record<string, unknown>;
}

export interface TableSpec {
  name: string;
  description?: string;
  fields: readonly unknown[];
}

export class AirtableStore {
  readonly bases = new Map<string, SimBase>();

  constructor(readonly clock: SimClock) {}

  addBase(id: string, name = id): SimBase {
    const existing = this.bases.get(id);
    if (existing !== undefined) return existing;
    const base: SimBase = { id, name, tables: [] };
    this.bases.set(id, base);
    return base;
  }

  base(id: string): SimBase | undefined {
    return this.bases.get(id);
  }

  /** A table by id (`tbl…`) or by exact name. */
  table(base: SimBase, idOrName: string): SimTable | undefined {
    return base.tables.find((t) => t.id === idOrName) ?? base.tables.find((t) => t.name === idOrName);
  }

  /** Creates a table from a metadata-API body. The first field becomes the primary field. */
  createTable(base: SimBase, spec: unknown, options: { allowComputed: boolean } = { allowComputed: false }): SimTable {
    if (typeof spec !== 'object' || spec === null) throw errors.invalidRequest('the body must be a table object');
    const { name, description, fields } = spec as Record<string, unknown>;
    if (typeof name !== 'string' || name.trim() === '') throw errors.invalidRequest('name is required');
    if (description !== undefined && typeof description !== 'string') throw errors.invalidRequest('description must be a string');
    if (!Array.isArray(fields) || fields.length === 0) throw errors.invalidRequest('fields must be a non-empty array');
    if (base.tables.some((t) => t.name.toLowerCase() === name.toLowerCase())) throw errors.duplicateTableName(name);
    const built: FieldModel[] = [];
    fields.forEach((f, i) => {
      const field = buildField(f, { primary: i === 0, allowComputed: options.allowComputed });
      if (built.some((b) => b.name.toLowerCase() === field.name.toLowerCase())) throw errors.duplicateFieldName(field.name);
      built.push(field);
    });
    const table: SimTable = {
      id: newId('tbl'),
      name,
      fields: built,
      views: [{ id: newId('viw'), name: 'Grid view', type: 'grid' }],
      records: new Map(),
      nextNumber: 1,
    };
    if (description !== undefined) table.description = description;
    base.tables.push(table);
    return table;
  }

  /** Adds a field from a metadata-API body; names are unique case-insensitively. */
  createField(table: SimTable, spec: unknown, options: { allowComputed: boolean } = { allowComputed: false }): FieldModel {
    const field = buildField(spec, { primary: false, allowComputed: options.allowComputed });
    if (table.fields.some((f) => f.name.toLowerCase() === field.name.toLowerCase())) throw errors.duplicateFieldName(field.name);
    table.fields.push(field);
    return field;
  }

  tableModel(table: SimTable): TableModel {
    const model: TableModel = {
      id: table.id,
      name: table.name,
      primaryFieldId: (table.fields[0] as FieldModel).id,
      fields: table.fields.map((f) => structuredClone(f)),
      views: table.views.map((v) => ({ ...v })),
    };
    if (table.description !== undefined) model.description = table.description;
    return model;
  }

  /** The record as the API shows it: empty cells left out, keys by name (or by id on request). */
  view(table: SimTable, record: SimRecord, byFieldId = false): ApiRecord {
    const fields: Record<string, unknown> = {};
    for (const field of table.fields) {
      const value = this.read(table, record, field);
      if (value === undefined) continue;
      fields[byFieldId ? field.id : field.name] = value;
    }
    return { id: record.id, createdTime: new Date(record.createdTime).toISOString(), fields };
  }

  /** One field's API value for a record, or undefined when empty. Computed fields are worked out here. */
  read(table: SimTable, record: SimRecord, field: FieldModel): unknown {
    switch (field.type) {
      case 'createdTime':
        return new Date(record.createdTime).toISOString();
      case 'lastModifiedTime':
        return new Date(record.modifiedTime).toISOString();
      case 'autoNumber':
        return record.number;
      case 'formula':
        return undefined;
      default: {
        const cell = record.cells.get(field.id);
        return cell === undefined ? undefined : fromCell(field, cell);
      }
    }
  }
}

/** A field by id or exact name, as record writes and list parameters name them. */
export function findField(table: SimTable, idOrName: string): FieldModel | undefined {
  return table.fields.find((f) => f.id === idOrName) ?? table.fields.find((f) => f.name === idOrName);
}

/**
 * A request's copy-on-write view of one table: reads see earlier changes of the same request; nothing
 * reaches the table until `commit()`.
 */
export class Staging {
  readonly records: Map<string, SimRecord>;
  readonly pendingChoices = new Map<string, Set<string>>();
  readonly created: string[] = [];
  readonly updated: string[] = [];
  private nextNumber: number;

  constructor(
    readonly table: SimTable,
    private readonly now: number,
  ) {
    this.records = new Map(table.records);
    this.nextNumber = table.nextNumber;
  }

  create(cells: Map<string, Cell>): SimRecord {
    const record: SimRecord = { id: newId('rec'), createdTime: this.now, modifiedTime: this.now, cells, number: this.nextNumber++ };
    this.records.set(record.id, record);
    this.created.push(record.id);
    return record;
  }

  /**
   * Writes `cells` over a record: PATCH keeps the cells not written, PUT (`destructive`) clears them.
   * A null in `cells` clears that cell.
   */
  update(id: string, cells: Map<string, Cell | null>, destructive: boolean): SimRecord {
    const before = this.records.get(id);
    if (before === undefined) throw errors.rowDoesNotExist(id);
    const next = new Map<string, Cell>(destructive ? [] : before.cells);
    for (const [fieldId, cell] of cells) {
      if (cell === null) next.delete(fieldId);
      else next.set(fieldId, cell);
    }
    const record: SimRecord = { ...before, cells: next, modifiedTime: this.now };
    this.records.set(id, record);
    if (!this.created.includes(id) && !this.updated.includes(id)) this.updated.push(id);
    return record;
  }

  commit(): void {
    this.table.records = this.records;
    this.table.nextNumber = this.nextNumber;
    for (const [fieldId, names] of this.pendingChoices) {
      const field = this.table.fields.find((f) => f.id === fieldId);
      if (field === undefined || isComputed(field)) continue;
      const choices: Choice[] = [...choicesOf(field)];
      for (const name of names) if (!choices.some((c) => c.name === name)) choices.push({ id: newId('sel'), name });
      field.options = { ...field.options, choices };
    }
  }
}
