/**
 * The file queue's in-memory index: one slot per event copy in `inbox.jsonl`, in file order, holding
 * only what claiming, acking and stats need (34 bytes a slot). Event bodies stay on disk and are read
 * when an event is claimed, so a million pending events cost about 34 MB here, not the size of the file.
 *
 * A slot's source is a small code (1..255; 0 for "not coded", see FileQueue's source registry) so that
 * a claim limited to some sources passes over the others' slots by comparing bytes, without reading
 * their lines.
 *
 * Slots live in fixed-size chunks of typed arrays (no doubling, so no 2x overshoot) and are addressed
 * by an absolute index that never changes; chunks wholly before the first slot not yet done are
 * released. Sequence numbers are non-decreasing along the table, so a seq is found by binary search.
 *
 * A slot's state: LIVE (waiting, possibly backing off) -> CLAIMED (handed to the worker) -> DONE;
 * LIVE -> DONE also happens (another process acked it, a dead letter found on open). DONE is final.
 */

export const SLOT_LIVE = 0;
export const SLOT_CLAIMED = 1;
export const SLOT_DONE = 2;
export type SlotState = typeof SLOT_LIVE | typeof SLOT_CLAIMED | typeof SLOT_DONE;

const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
const MASK = CHUNK - 1;

interface Chunk {
  seq: Float64Array;
  offset: Float64Array;
  length: Uint32Array;
  receivedAt: Float64Array;
  keyHash: Int32Array;
  state: Uint8Array;
  source: Uint8Array;
}

function newChunk(): Chunk {
  return {
    seq: new Float64Array(CHUNK),
    offset: new Float64Array(CHUNK),
    length: new Uint32Array(CHUNK),
    receivedAt: new Float64Array(CHUNK),
    keyHash: new Int32Array(CHUNK),
    state: new Uint8Array(CHUNK),
    source: new Uint8Array(CHUNK),
  };
}

export class SlotTable {
  private chunks: Chunk[] = [];
  /** Chunk number of chunks[0]. */
  private firstChunk = 0;
  /** Absolute index of the first retained slot; every slot before it is DONE. */
  private startIndex = 0;
  /** Absolute index the next slot gets. */
  private endIndex = 0;

  get start(): number {
    return this.startIndex;
  }

  get end(): number {
    return this.endIndex;
  }

  /** Appends a LIVE slot; `source` is the copy's source code (0..255). Returns its index. */
  append(seq: number, offset: number, length: number, receivedAt: number, keyHash: number, source: number): number {
    const index = this.endIndex;
    const c = index >>> CHUNK_BITS;
    if (c - this.firstChunk >= this.chunks.length) this.chunks.push(newChunk());
    const chunk = this.chunk(index);
    const i = index & MASK;
    chunk.seq[i] = seq;
    chunk.offset[i] = offset;
    chunk.length[i] = length;
    chunk.receivedAt[i] = receivedAt;
    chunk.keyHash[i] = keyHash;
    chunk.state[i] = SLOT_LIVE;
    chunk.source[i] = source;
    this.endIndex++;
    return index;
  }

  has(index: number): boolean {
    return index >= this.startIndex && index < this.endIndex;
  }

  seq(index: number): number {
    return this.chunk(index).seq[index & MASK] as number;
  }

  offset(index: number): number {
    return this.chunk(index).offset[index & MASK] as number;
  }

  setOffset(index: number, offset: number): void {
    this.chunk(index).offset[index & MASK] = offset;
  }

  length(index: number): number {
    return this.chunk(index).length[index & MASK] as number;
  }

  receivedAt(index: number): number {
    return this.chunk(index).receivedAt[index & MASK] as number;
  }

  keyHash(index: number): number {
    return this.chunk(index).keyHash[index & MASK] as number;
  }

  state(index: number): SlotState {
    return this.chunk(index).state[index & MASK] as SlotState;
  }

  setState(index: number, state: SlotState): void {
    this.chunk(index).state[index & MASK] = state;
  }

  source(index: number): number {
    return this.chunk(index).source[index & MASK] as number;
  }

  /**
   * The first slot from `from` on (at least `start`) that is LIVE and, when `sources` is given, whose
   * source code `c` has `sources[c] !== 0`; `end` when there is none. Walks the typed arrays chunk by
   * chunk (no per-slot lookup), for a claim that passes over a long run of other sources' slots.
   */
  nextLive(from: number, sources: Uint8Array | null): number {
    let i = Math.max(from, this.startIndex);
    while (i < this.endIndex) {
      const chunk = this.chunk(i);
      const stop = Math.min(this.endIndex, ((i >>> CHUNK_BITS) + 1) * CHUNK);
      const state = chunk.state;
      let k = i & MASK;
      const last = k + (stop - i);
      if (sources === null) {
        while (k < last && state[k] !== SLOT_LIVE) k++;
      } else {
        const source = chunk.source;
        while (k < last && (state[k] !== SLOT_LIVE || sources[source[k] as number] === 0)) k++;
      }
      i = stop - (last - k);
      if (k < last) return i;
    }
    return this.endIndex;
  }

  /** The first retained slot whose seq is `seq`, or -1. */
  find(seq: number): number {
    let lo = this.startIndex;
    let hi = this.endIndex;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (this.seq(mid) < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.endIndex && this.seq(lo) === seq ? lo : -1;
  }

  /** Drops DONE slots from the front, releasing whole chunks. */
  trim(): void {
    while (this.startIndex < this.endIndex && this.state(this.startIndex) === SLOT_DONE) this.startIndex++;
    const keepFrom = this.startIndex >>> CHUNK_BITS;
    if (keepFrom > this.firstChunk) {
      this.chunks.splice(0, keepFrom - this.firstChunk);
      this.firstChunk = keepFrom;
    }
  }

  /** Bytes held by the typed arrays. */
  get bytes(): number {
    return this.chunks.length * CHUNK * 34;
  }

  private chunk(index: number): Chunk {
    const chunk = this.chunks[(index >>> CHUNK_BITS) - this.firstChunk];
    if (chunk === undefined) throw new RangeError(`slot ${index} is not in the table (${this.startIndex}..${this.endIndex})`);
    return chunk;
  }
}
