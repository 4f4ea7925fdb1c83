/**
 * Readable plain text from an email's HTML body. Missive gives only HTML (reference 1.5.2, pitfall 8),
 * so `body_text` is ours to derive. What a reader of the text needs:
 * - links keep their target: `the report [https://example.com/x]` (the URL alone when it is the text);
 * - images are dropped (inline images are attachments, listed separately);
 * - quoted history is kept, as `> ` lines, nested quotes as `> > `;
 * - headings keep their case; layout tables read as one line per row;
 * - no hard wrapping (readers wrap), no runs of blank lines, no trailing spaces.
 * A body with no tags at all (SMS and other channels) is returned as it is, trimmed.
 */
import { compile } from 'html-to-text';

const HEADINGS = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({ selector, options: { uppercase: false } }));

const convert = compile({
  wordwrap: false,
  selectors: [
    { selector: 'img', format: 'skip' },
    { selector: 'a', options: { hideLinkHrefIfSameAsText: true, noAnchorUrl: true } },
    ...HEADINGS,
    { selector: 'table', format: 'block' },
    { selector: 'tr', format: 'block', options: { leadingLineBreaks: 1, trailingLineBreaks: 1 } },
    { selector: 'td', format: 'inlineSurround', options: { prefix: '', suffix: ' ' } },
    { selector: 'th', format: 'inlineSurround', options: { prefix: '', suffix: ' ' } },
  ],
});

const TAG = /<\/?[a-z][^>]*>|<!--|<!doctype/i;

/** Plain text of an HTML body; null for null or an empty body. */
export function htmlToText(html: string | null | undefined): string | null {
  if (html === null || html === undefined) return null;
  const text = TAG.test(html) ? convert(html) : html;
  const tidy = text
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((line) => line.replace(/[ \t\u00a0]+$/, ''))
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
  return tidy === '' ? null : tidy;
}

/** A short excerpt of plain text, for a preview when Missive sent none: whitespace collapsed, ~140 chars. */
export function excerpt(text: string | null, maxChars = 140): string | null {
  if (text === null) return null;
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat === '') return null;
  const chars = [...flat];
  return chars.length <= maxChars ? flat : `${chars.slice(0, maxChars - 1).join('').trimEnd()}…`;
}
