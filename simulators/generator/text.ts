/**
 * Words, names and bodies for generated data. Deliberately mixed: ASCII, accented Latin, CJK, Cyrillic,
 * Arabic (right to left), emoji (outside the BMP), quotes and markup characters that break naive
 * escaping, and descriptions long enough to cross buffer sizes.
 */
import type { Random } from './random.ts';

export const PEOPLE: ReadonlyArray<{ first: string; last: string }> = [
  { first: 'Ada', last: 'Lovelace' },
  { first: 'Zoë', last: 'Ågren' },
  { first: 'José', last: 'Núñez' },
  { first: 'Ørjan', last: 'Bjørnstad' },
  { first: '雷', last: '李' },
  { first: 'Анна', last: 'Петрова' },
  { first: 'Łukasz', last: 'Żółć' },
  { first: 'Siobhán', last: "O'Connor" },
  { first: 'محمد', last: 'العلي' },
  { first: 'Grace', last: 'Hopper' },
  { first: 'François', last: 'Dupré' },
  { first: 'Yūki', last: 'Tanaka' },
];

const WORDS = [
  'invoice', 'release', 'migration', 'review', 'budget', 'client', 'onboarding', 'deadline', 'design',
  'Überprüfung', 'façade', 'naïve', 'crème', 'smörgåsbord', 'déjà-vu', '设计', '预算', 'отчёт', 'проект',
  'تقرير', 'データ', 'café', 'résumé', '"quoted"', '<angle>', 'a&b', 'emoji🚀', '👩‍💻', 'line/slash', "it's",
];

const PHRASES = [
  'Prepare the quarterly report',
  'Fix login redirect on Safari',
  'Rechnung für März prüfen',
  'Préparer la réunion de lundi',
  '准备下周的发布说明',
  'Обновить документацию API',
  'مراجعة العقد مع العميل',
  'Ship v2 🚀 before Friday',
  'Call back "ACME & Sons" <sales>',
  'Migrate tasks from the old board',
  'Onboard the new designer',
  'Review pull request #42',
];

export function words(random: Random, count: number): string {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(random.pick(WORDS));
  return out.join(' ');
}

/** A task-like title, sometimes with a unicode suffix. */
export function title(random: Random): string {
  const base = random.pick(PHRASES);
  return random.chance(0.3) ? `${base} – ${words(random, 2)}` : base;
}

/**
 * A description: null, empty, one line, Markdown with a trailing newline (as Teamwork sends), or a
 * long text of several kilobytes.
 */
export function description(random: Random): string | null {
  const roll = random.next();
  if (roll < 0.1) return null;
  if (roll < 0.15) return '';
  if (roll < 0.55) return `${words(random, random.int(4, 14))}\n`;
  if (roll < 0.85) {
    return `## ${title(random)}\n\n- ${words(random, 5)}\n- ${words(random, 7)}\n\n**Note:** ${words(random, 9)}\n`;
  }
  const paragraphs: string[] = [];
  const count = random.int(20, 60);
  for (let i = 0; i < count; i++) paragraphs.push(words(random, random.int(20, 40)));
  return `${paragraphs.join('\n\n')}\n`;
}

/** An email subject: ASCII, accented, CJK, emoji, and reply/forward prefixes are added by callers. */
export function subject(random: Random): string {
  return random.pick([
    'Quarterly numbers',
    'Rechnung Nr. 2024-0117 – Zahlungserinnerung',
    'Réunion de lundi : ordre du jour',
    '会议纪要（第三季度）',
    'Заявка на поддержку №5531',
    'Your order 🎉 has shipped',
    'Re: "Contract" & <attachments>',
    'Ünïcödé ßubject with émojis 👍🏽',
    'Quick question',
    'طلب عرض سعر',
  ]);
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * An HTML email body. Inline images reference attachments by `data-missive-attachment-id` (as Missive
 * renders them); replies quote the previous message in a `blockquote`.
 */
export function htmlBody(random: Random, options: { inlineAttachmentIds?: string[]; quote?: string | null } = {}): string {
  const parts: string[] = ['<div dir="auto">'];
  const paragraphs = random.int(1, random.chance(0.15) ? 40 : 4);
  for (let i = 0; i < paragraphs; i++) parts.push(`<p>${escapeHtml(words(random, random.int(6, 30)))}</p>`);
  for (const id of options.inlineAttachmentIds ?? []) {
    parts.push(`<p><img src="https://attachments.missiveapp.com/${id}/inline" data-missive-attachment-id="${id}" alt="image"></p>`);
  }
  if (random.chance(0.3)) parts.push('<table><tr><td>Σ</td><td>1 234,50 €</td></tr></table>');
  parts.push('</div>');
  if (options.quote) parts.push(`<blockquote class="gmail_quote">${options.quote}</blockquote>`);
  return parts.join('');
}

/** The plain-text preview Missive shows: tags stripped, whitespace collapsed, about 140 characters. */
export function previewOf(html: string): string {
  const withoutQuote = html.replace(/<blockquote[\s\S]*$/i, '');
  const text = withoutQuote
    .replace(/<[^>]+>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
  return Array.from(text).slice(0, 140).join('');
}

export interface FileSpec {
  filename: string;
  extension: string;
  mediaType: string;
  subType: string;
  width?: number;
  height?: number;
}

const FILES: readonly FileSpec[] = [
  { filename: 'invoice-2024-0117.pdf', extension: 'pdf', mediaType: 'application', subType: 'pdf' },
  { filename: 'Rechnung März.pdf', extension: 'pdf', mediaType: 'application', subType: 'pdf' },
  { filename: '报告.xlsx', extension: 'xlsx', mediaType: 'application', subType: 'vnd.openxmlformats-officedocument.spreadsheetml.sheet' },
  { filename: 'screenshot.png', extension: 'png', mediaType: 'image', subType: 'png', width: 1280, height: 800 },
  { filename: 'фото отпуска.jpg', extension: 'jpg', mediaType: 'image', subType: 'jpeg', width: 4032, height: 3024 },
  { filename: 'notes.txt', extension: 'txt', mediaType: 'text', subType: 'plain' },
  { filename: 'contrat signé (final).docx', extension: 'docx', mediaType: 'application', subType: 'vnd.openxmlformats-officedocument.wordprocessingml.document' },
  { filename: 'logo 🚀.gif', extension: 'gif', mediaType: 'image', subType: 'gif', width: 64, height: 64 },
];

export function fileSpec(random: Random): FileSpec {
  return random.pick(FILES);
}

/** Deterministic file content of `size` bytes for an attachment id (what the download URL serves). */
export function fileBytes(id: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  for (let i = 0; i < size; i++) {
    h = Math.imul(h ^ (h >>> 13), 0x5bd1e995) >>> 0;
    out[i] = h & 0xff;
  }
  return out;
}
