// Sends two messages through Mailgun's official SDK (mailgun.js, with
// form-data), pointed at Shivneri with the client's documented `url`
// option: one with messages.create's fields (POST /v3/DOMAIN/messages),
// one raw MIME message (POST /v3/DOMAIN/messages.mime).
// Environment: SHIVNERI_URL, SHIVNERI_KEY, SHIVNERI_DOMAIN.
// Prints one JSON line: {"form": answer, "mime": answer}; exits 1 with
// the SDK's error on stdout when a send fails.
'use strict';
const fs = require('fs');
const path = require('path');
const FormData = require('form-data');
const Mailgun = require('mailgun.js');

const data = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixture.json')));

async function main() {
  const mailgun = new Mailgun(FormData);
  const mg = mailgun.client({
    username: 'api',
    key: process.env.SHIVNERI_KEY,
    url: process.env.SHIVNERI_URL,
    timeout: 20000,
  });
  const domain = process.env.SHIVNERI_DOMAIN;
  try {
    const form = await mg.messages.create(domain, {
      from: 'The Shop <shop@' + domain + '>',
      to: ['To One <to1@example.com>', 'to2@example.com'],
      cc: '"Cee, Esq." <cc@example.com>',
      bcc: 'hidden@example.com',
      subject: data.subject,
      text: data.text,
      html: data.html,
      'h:X-Order': '1234',
      'h:X-Campaign': 'spring',
      'h:Reply-To': 'help@example.com',
      'o:tag': ['receipts'],
      'v:user': '42',
      attachment: [{
        filename: 'invoice.pdf',
        data: Buffer.from(data.pdf_b64, 'base64'),
        contentType: 'application/pdf',
      }],
      inline: [{
        filename: 'logo.png',
        data: Buffer.from(data.png_b64, 'base64'),
        contentType: 'image/png',
      }],
    });
    const mime = await mg.messages.create(domain, {
      to: 'raw@example.com',
      message: Buffer.from(data.raw_mime, 'utf8'),
    });
    console.log(JSON.stringify({ form, mime }));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e), status: e.status,
                                 details: e.details }));
    process.exit(1);
  }
}

main();
