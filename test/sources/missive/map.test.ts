/**
 * Vendor payload -> canonical Email, for every payload shape in reference/missive.md. Each test asserts
 * the whole record (every canonical field), so a field that goes missing or changes meaning fails here.
 */
import { describe, expect, it } from 'vitest';
import type { Email } from '../../../src/model.ts';
import { emailVersion, isTrashed, toEmail, unixToDate } from '../../../src/sources/missive/map.ts';
import { deliveryMessage, MessagesResponse, MissiveConversation, MissiveDelivery, unreadableDeliveryMessage } from '../../../src/sources/missive/payloads.ts';
import { ConnectorError } from '../../../src/errors.ts';
import { createMissiveSource } from '../../../src/sources/missive/index.ts';
import { htmlToText } from '../../../src/sources/missive/text.ts';
import { config, delivery, fixture, logSink } from './helpers.ts';

const CONV = '5bb24f9c-3b5f-4fbb-9bd3-2f0e2b2e8f11';
const CONV_URL = `https://mail.missiveapp.com/#inbox/conversations/${CONV}`;
const CAROL = { id: '7d3c2a10-1111-4c3e-9a1b-000000000001', name: 'Carol Jones', email: 'carol@example.org' };

/** Maps a webhook fixture the way the handler does without API credentials. */
function mapDelivery(name: string, observedAt: Date): { email: Email; body: Record<string, unknown> } {
  const body = fixture(name);
  const parsed = MissiveDelivery.parse(body);
  const message = deliveryMessage(parsed);
  if (message === null) throw new Error(`${name} has no message`);
  return { email: toEmail(message, MissiveConversation.parse(parsed.conversation), { observedAt }), body };
}

describe('Missive mapping', () => {
  it('incoming_email (message under `message`): every field, no body yet, attachment metadata', () => {
    const observedAt = new Date('2024-11-28T12:05:00.000Z');
    const { email, body } = mapDelivery('incoming-email.json', observedAt);
    expect(email).toEqual({
      id: 'c4f3a3d2-8b1e-4c55-9a0f-6d7e8f901234',
      conversationId: CONV,
      subject: 'Invoice 42 — Q4',
      preview: 'Hello, please find the invoice for Q4 attached.',
      fromName: 'Bob Example',
      fromAddress: 'bob@example.com',
      to: [{ name: 'Support', address: 'support@example.org' }],
      cc: [{ name: null, address: 'ap@example.com' }],
      bcc: [],
      replyTo: [{ name: 'Billing Dept', address: 'billing@example.com' }],
      bodyHtml: null,
      bodyText: null,
      deliveredAt: new Date('2024-11-28T12:00:00.000Z'),
      createdAt: new Date('2024-11-28T12:00:00.000Z'),
      updatedAt: observedAt,
      messageIdHeader: '<CAF=abc123@mail.example.com>',
      inReplyTo: [],
      references: [],
      labels: ['Billing', 'Kundenanfrage'],
      assignees: [CAROL],
      conversationUrl: CONV_URL,
      draft: false,
      deleted: false,
      deletedAt: null,
      attachments: [
        {
          id: '9a8b7c6d-0000-4000-8000-00000000a001',
          emailId: 'c4f3a3d2-8b1e-4c55-9a0f-6d7e8f901234',
          filename: 'invoice-42.pdf',
          mediaType: 'application/pdf',
          size: 48213,
          url: 'https://files.missiveapp.com/attachments/9a8b7c6d/invoice-42.pdf?Expires=1732798800&Signature=abc',
          storedPath: null,
          sha256: null,
        },
      ],
      raw: { message: body.message, conversation: body.conversation },
    });
  });

  it('outgoing_email with an HTML body: readable text with links and quoted history, threading headers, bcc', () => {
    const observedAt = new Date('2024-11-28T13:00:10.000Z');
    const { email, body } = mapDelivery('outgoing-email.json', observedAt);
    const message = body.message as Record<string, unknown>;
    const { body: html, ...rawMessage } = message;
    expect(email).toEqual({
      id: 'd5e6f7a8-1c2d-4e3f-8a9b-0c1d2e3f4a5b',
      conversationId: CONV,
      subject: 'Re: Invoice 42 — Q4',
      preview: 'Thanks Bob, we received it.',
      fromName: 'Carol Jones',
      fromAddress: 'carol@example.org',
      to: [{ name: 'Bob Example', address: 'bob@example.com' }],
      cc: [],
      bcc: [{ name: 'Archive', address: 'archive@example.org' }],
      replyTo: [],
      bodyHtml: html,
      bodyText: 'Thanks Bob, we received it.\nSee the portal [https://example.org/portal/42].\n\n> Hello, please find the invoice for Q4 attached.',
      deliveredAt: new Date('2024-11-28T13:00:00.000Z'),
      createdAt: new Date('2024-11-28T12:59:50.000Z'),
      updatedAt: observedAt,
      messageIdHeader: '<0f1a2b3c-4d5e@missiveapp.com>',
      inReplyTo: ['<CAF=abc123@mail.example.com>'],
      references: ['<CAF=abc000@mail.example.com>', '<CAF=abc123@mail.example.com>'],
      labels: ['Billing', 'Kundenanfrage'],
      assignees: [CAROL],
      conversationUrl: CONV_URL,
      draft: false,
      deleted: false,
      deletedAt: null,
      attachments: [],
      raw: { message: rawMessage, conversation: body.conversation },
    });
  });

  it('label_change (message under `latest_message`): the new labels; the version never precedes the activity', () => {
    // Observed (delivery received) before the conversation's last activity by our clock: the version
    // is the later of the two, so it cannot be older than what Missive says happened.
    const observedAt = new Date('2024-11-28T13:59:00.000Z');
    const { email, body } = mapDelivery('label-change.json', observedAt);
    expect(email).toEqual({
      id: 'd5e6f7a8-1c2d-4e3f-8a9b-0c1d2e3f4a5b',
      conversationId: CONV,
      subject: 'Re: Invoice 42 — Q4',
      preview: 'Thanks Bob, we received it.',
      fromName: 'Carol Jones',
      fromAddress: 'carol@example.org',
      to: [{ name: 'Bob Example', address: 'bob@example.com' }],
      cc: [],
      bcc: [{ name: 'Archive', address: 'archive@example.org' }],
      replyTo: [],
      bodyHtml: null,
      bodyText: null,
      deliveredAt: new Date('2024-11-28T13:00:00.000Z'),
      createdAt: new Date('2024-11-28T12:59:50.000Z'),
      updatedAt: new Date('2024-11-28T14:00:00.000Z'),
      messageIdHeader: '<0f1a2b3c-4d5e@missiveapp.com>',
      inReplyTo: ['<CAF=abc123@mail.example.com>'],
      references: ['<CAF=abc000@mail.example.com>', '<CAF=abc123@mail.example.com>'],
      labels: ['Paid'],
      assignees: [CAROL],
      conversationUrl: CONV_URL,
      draft: false,
      deleted: false,
      deletedAt: null,
      attachments: [],
      raw: { message: body.latest_message, conversation: body.conversation },
    });
  });

  it('new_comment: the comment is not an email; the conversation state lands on the message it names', () => {
    const observedAt = new Date('2024-11-28T15:00:05.000Z');
    const { email, body } = mapDelivery('new-comment.json', observedAt);
    expect(email).toEqual({
      id: 'd5e6f7a8-1c2d-4e3f-8a9b-0c1d2e3f4a5b',
      conversationId: CONV,
      subject: 'Re: Invoice 42 — Q4',
      preview: 'Thanks Bob, we received it.',
      fromName: 'Carol Jones',
      fromAddress: 'carol@example.org',
      to: [{ name: 'Bob Example', address: 'bob@example.com' }],
      cc: [],
      bcc: [{ name: 'Archive', address: 'archive@example.org' }],
      replyTo: [],
      bodyHtml: null,
      bodyText: null,
      deliveredAt: new Date('2024-11-28T13:00:00.000Z'),
      createdAt: new Date('2024-11-28T12:59:50.000Z'),
      updatedAt: observedAt,
      messageIdHeader: '<0f1a2b3c-4d5e@missiveapp.com>',
      inReplyTo: ['<CAF=abc123@mail.example.com>'],
      references: ['<CAF=abc000@mail.example.com>', '<CAF=abc123@mail.example.com>'],
      labels: ['Billing', 'Kundenanfrage'],
      assignees: [CAROL],
      conversationUrl: CONV_URL,
      draft: false,
      deleted: false,
      deletedAt: null,
      // The comment's own attachment belongs to no email.
      attachments: [],
      raw: { message: body.latest_message, conversation: body.conversation },
    });
  });

  it('trashed by every user: deleted, with deletedAt equal to the version', () => {
    const observedAt = new Date('2024-11-28T16:00:02.000Z');
    const { email, body } = mapDelivery('trashed.json', observedAt);
    expect(email).toEqual({
      id: 'd5e6f7a8-1c2d-4e3f-8a9b-0c1d2e3f4a5b',
      conversationId: CONV,
      subject: 'Re: Invoice 42 — Q4',
      preview: 'Thanks Bob, we received it.',
      fromName: 'Carol Jones',
      fromAddress: 'carol@example.org',
      to: [{ name: 'Bob Example', address: 'bob@example.com' }],
      cc: [],
      bcc: [{ name: 'Archive', address: 'archive@example.org' }],
      replyTo: [],
      bodyHtml: null,
      bodyText: null,
      deliveredAt: new Date('2024-11-28T13:00:00.000Z'),
      createdAt: new Date('2024-11-28T12:59:50.000Z'),
      updatedAt: observedAt,
      messageIdHeader: '<0f1a2b3c-4d5e@missiveapp.com>',
      inReplyTo: ['<CAF=abc123@mail.example.com>'],
      references: ['<CAF=abc000@mail.example.com>', '<CAF=abc123@mail.example.com>'],
      labels: ['Billing', 'Kundenanfrage'],
      assignees: [CAROL],
      conversationUrl: CONV_URL,
      draft: false,
      deleted: true,
      deletedAt: observedAt,
      attachments: [],
      raw: { message: body.latest_message, conversation: body.conversation },
    });
  });

  it('trash is per user: deleted only when every user has trashed the conversation', () => {
    const conv = MissiveConversation.parse(fixture<Record<string, unknown>>('trashed.json').conversation);
    expect(isTrashed(conv)).toBe(true);
    const users = conv.users ?? [];
    expect(isTrashed({ ...conv, users: [users[0]!, { ...users[1]!, trashed: false }] })).toBe(false);
    expect(isTrashed({ ...conv, users: [] })).toBe(false);
    const guest = MissiveConversation.parse({ id: 'guest-1', last_activity_at: 1732809600 });
    expect(isTrashed(guest)).toBe(false);
  });

  it('null and empty names, null lists, no subject, no web_url, no updated_at', () => {
    const observedAt = new Date('2024-11-28T17:00:00.000Z');
    const { email, body } = mapDelivery('null-names.json', observedAt);
    const conversation = body.conversation as Record<string, unknown>;
    expect(email).toEqual({
      id: 'f9a0b1c2-3d4e-4f5a-8b6c-7d8e9f0a1b2c',
      conversationId: '7dd46fbe-5d71-4bdd-9df5-4f2f4d4faf33',
      subject: '(no subject)',
      preview: 'ping',
      fromName: null,
      fromAddress: 'noreply@example.net',
      to: [
        { name: null, address: 'ops@example.org' },
        { name: null, address: 'alerts@example.org' },
      ],
      cc: [],
      bcc: [],
      replyTo: [],
      bodyHtml: null,
      bodyText: null,
      deliveredAt: new Date('2024-11-28T17:40:00.000Z'),
      createdAt: new Date('2024-11-28T17:40:00.000Z'),
      // Missive's delivered_at is later than our (skewed) observation: the version is never older.
      updatedAt: new Date('2024-11-28T17:40:00.000Z'),
      messageIdHeader: '<ping-1@example.net>',
      inReplyTo: [],
      references: [],
      labels: [],
      assignees: [{ id: '7d3c2a10-1111-4c3e-9a1b-000000000009', name: null, email: 'ops@example.org' }],
      conversationUrl: 'https://mail.missiveapp.com/#inbox/conversations/7dd46fbe-5d71-4bdd-9df5-4f2f4d4faf33',
      draft: false,
      deleted: false,
      deletedAt: null,
      attachments: [],
      raw: { message: body.message, conversation },
    });
  });

  it('GET /messages/:id with attachments with non-ASCII names, inline image dropped from the text', () => {
    const observedAt = new Date('2024-11-28T16:41:00.000Z');
    const response = fixture<{ messages: Record<string, unknown> }>('message-with-attachments.json');
    const [message] = MessagesResponse.parse(response).messages;
    const email = toEmail(message!, null, { observedAt });
    const { body: html, conversation, ...rawMessage } = response.messages;
    const emailId = 'e7f8a9b0-2c3d-4e5f-9a0b-1c2d3e4f5a6b';
    expect(email).toEqual({
      id: emailId,
      conversationId: '6cc35fad-4c60-4acc-8ce4-3f1f3c3f9f22',
      subject: 'Unterlagen für März',
      preview: 'Anbei die Unterlagen.',
      fromName: 'Jörg Müller',
      fromAddress: 'joerg@example.de',
      to: [{ name: 'Support', address: 'support@example.org' }],
      cc: [],
      bcc: [],
      replyTo: [],
      bodyHtml: html,
      bodyText: 'Anbei die Unterlagen.',
      deliveredAt: new Date('2024-11-28T16:40:00.000Z'),
      createdAt: new Date('2024-11-28T16:40:00.000Z'),
      updatedAt: observedAt,
      messageIdHeader: '<m%C3%A4rz-42@mail.example.de>',
      inReplyTo: [],
      references: [],
      labels: [],
      assignees: [],
      conversationUrl: 'https://mail.missiveapp.com/#inbox/conversations/6cc35fad-4c60-4acc-8ce4-3f1f3c3f9f22',
      draft: false,
      deleted: false,
      deletedAt: null,
      attachments: [
        {
          id: '9a8b7c6d-0000-4000-8000-00000000a011',
          emailId,
          filename: 'Rechnung Nr. 42 – März.pdf',
          mediaType: 'application/pdf',
          size: 10240,
          url: 'https://files.missiveapp.com/attachments/a011/file?Expires=1732815600',
          storedPath: null,
          sha256: null,
        },
        {
          id: '9a8b7c6d-0000-4000-8000-00000000a012',
          emailId,
          filename: 'фото 📷 报告.JPG',
          mediaType: 'image/jpeg',
          size: 2048,
          url: 'https://files.missiveapp.com/attachments/a012/file?Expires=1732815600',
          storedPath: null,
          sha256: null,
        },
        {
          id: '9a8b7c6d-0000-4000-8000-00000000a013',
          emailId,
          filename: 'logo.png',
          mediaType: 'image/png',
          size: 512,
          url: 'https://files.missiveapp.com/inline/logo.png',
          storedPath: null,
          sha256: null,
        },
      ],
      raw: { message: rawMessage, conversation },
    });
  });

  it('the validation request (no conversation) maps to nothing and is acknowledged with a note', () => {
    const source = createMissiveSource(config(), { log: logSink().log });
    const parsed = source.parseWebhook(delivery(JSON.stringify(fixture('validation-request.json'))));
    expect(parsed.events).toEqual([]);
    expect(parsed.note).toMatch(/validation request/);
    expect(parsed.eventType).toBe('incoming_email');
  });

  it('tolerates odd shapes: numeric ids, a lone Message-ID string, a non-array recipient list, a bad timestamp', () => {
    const message = MissiveDelivery.parse({
      conversation: { id: 12345 },
      message: {
        id: 987,
        in_reply_to: '<lone@example.com>',
        to_fields: 'not-a-list',
        cc_fields: [{ name: 'No address' }, { name: 'Has one', address: 'x@example.com' }, 42],
        delivered_at: 'yesterday',
        created_at: '1732795200',
        from_field: { id: 'u-7', username: 'wa-user', name: 'WhatsApp Person' },
        surprise: { kept: true },
      },
    }).message!;
    const email = toEmail(message, MissiveConversation.parse({ id: 12345 }), { observedAt: new Date('2024-11-28T12:00:00.000Z') });
    expect(email.id).toBe('987');
    expect(email.conversationId).toBe('12345');
    expect(email.inReplyTo).toEqual(['<lone@example.com>']);
    expect(email.to).toEqual([]);
    expect(email.cc).toEqual([{ name: 'Has one', address: 'x@example.com' }]);
    expect(email.deliveredAt).toBeNull();
    expect(email.createdAt).toEqual(new Date('2024-11-28T12:00:00.000Z'));
    expect(email.fromName).toBe('WhatsApp Person');
    expect(email.fromAddress).toBe('wa-user');
    expect((email.raw as { message: Record<string, unknown> }).message.surprise).toEqual({ kept: true });
  });

  it('version = max(observed, message times, conversation activity)', () => {
    const message = MissiveDelivery.parse({ conversation: { id: 'c' }, message: { id: 'm', updated_at: 1000, delivered_at: 900 } }).message!;
    const conv = MissiveConversation.parse({ id: 'c', last_activity_at: 1100 });
    expect(emailVersion(message, conv, new Date(500_000))).toEqual(new Date(1_100_000));
    expect(emailVersion(message, conv, new Date(2_000_000))).toEqual(new Date(2_000_000));
    expect(emailVersion(message, null, new Date(0))).toEqual(new Date(1_000_000));
    expect(unixToDate(null)).toBeNull();
    expect(unixToDate(1732795200)).toEqual(new Date('2024-11-28T12:00:00.000Z'));
  });
});

describe('Missive times that are not times, and messages we cannot read', () => {
  /** What `run` threw, as a ConnectorError. */
  function thrown(run: () => unknown): ConnectorError {
    try {
      run();
    } catch (err) {
      expect(err).toBeInstanceOf(ConnectorError);
      return err as ConnectorError;
    }
    throw new Error('expected a ConnectorError; nothing was thrown');
  }

  it('unixToDate refuses a number that is not a valid time, naming the field', () => {
    for (const value of [1e308, -1, -1e12, 1e15, 4_102_444_800, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = thrown(() => unixToDate(value, 'latest_message.delivered_at'));
      expect(err.code).toBe('CONN_ERR_EVENT_INVALID');
      expect(err.retryable).toBe(false);
      expect(err.message).toBe(`latest_message.delivered_at: ${String(value)} is not a valid time (unix seconds between 1970 and 2100)`);
    }
    expect(unixToDate(0)).toEqual(new Date(0));
    expect(unixToDate(4_102_444_799)).toEqual(new Date('2099-12-31T23:59:59.000Z'));
  });

  it('toEmail names the field a bad time came from: the delivery key, the message\'s own conversation, a snapshot position', () => {
    const observedAt = new Date('2024-11-28T12:00:00.000Z');
    const bad = MissiveDelivery.parse({ conversation: { id: 'c', last_activity_at: 1e308 }, latest_message: { id: 'm', delivered_at: 1e308, conversation: { id: 'c', last_activity_at: -5 } } });
    const conv = MissiveConversation.parse(bad.conversation);
    const message = deliveryMessage(bad)!;
    expect(thrown(() => toEmail({ ...message, conversation: null }, MissiveConversation.parse({ id: 'c' }), { observedAt, field: 'latest_message' })).message).toMatch(/^latest_message\.delivered_at: 1e\+308 is not a valid time/);
    expect(thrown(() => toEmail({ ...message, delivered_at: 1 }, conv, { observedAt })).message).toMatch(/^conversation\.last_activity_at: 1e\+308 is not/);
    expect(thrown(() => toEmail({ ...message, delivered_at: 1 }, null, { observedAt, field: 'messages[3]' })).message).toMatch(/^messages\[3\]\.conversation\.last_activity_at: -5 is not/);
  });

  it('unreadableDeliveryMessage names the field of a message we cannot read, and is null when there is none or it reads', () => {
    expect(unreadableDeliveryMessage({ conversation: { id: 'c' }, latest_message: 'm-1' })).toBe('latest_message: expected an object, got "m-1"');
    expect(unreadableDeliveryMessage({ conversation: { id: 'c' }, latest_message: [1] })).toBe('latest_message: expected an object, got [1]');
    expect(unreadableDeliveryMessage({ conversation: { id: 'c' }, latest_message: { id: false } })).toBe('latest_message.id: expected a string id, got false');
    expect(unreadableDeliveryMessage({ conversation: { id: 'c' }, message: {}, latest_message: { id: 'm' } })).toBe('message.id: expected a string id, got nothing (no such key)');
    expect(unreadableDeliveryMessage({ conversation: { id: 'c' }, message: null, latest_message: { id: 7 } })).toBeNull();
    expect(unreadableDeliveryMessage({ conversation: { id: 'c' } })).toBeNull();
  });
});

describe('htmlToText', () => {
  it('keeps links, drops images, keeps nested quotes readable, keeps heading case, skips style and script', () => {
    const html = `<html><head><style>p{color:red}</style></head><body>
      <h2>Status Update</h2>
      <p>Hello <b>Ada</b>,</p>
      <p>See <a href="https://example.com/r">the report</a> or <a href="https://example.com/x">https://example.com/x</a>.</p>
      <img src="cid:logo" alt="Logo">
      <ul><li>one</li><li>two</li></ul>
      <table><tr><td>Item</td><td>Qty</td></tr><tr><td>Apple</td><td>3</td></tr></table>
      <div class="gmail_quote">On Mon, Bob wrote:<blockquote>Earlier <i>text</i><br>line two<blockquote>older</blockquote></blockquote></div>
      <script>alert(1)</script></body></html>`;
    expect(htmlToText(html)).toBe(
      [
        'Status Update',
        '',
        'Hello Ada,',
        '',
        'See the report [https://example.com/r] or https://example.com/x.',
        '',
        ' * one',
        ' * two',
        '',
        'Item Qty',
        'Apple 3',
        '',
        'On Mon, Bob wrote:',
        '',
        '> Earlier text',
        '> line two',
        '>',
        '> > older',
      ].join('\n'),
    );
  });

  it('returns plain text bodies as they are, and null for empty input', () => {
    expect(htmlToText('Just text\nsecond line & more')).toBe('Just text\nsecond line & more');
    expect(htmlToText(null)).toBeNull();
    expect(htmlToText('<p> </p>')).toBeNull();
  });
});
