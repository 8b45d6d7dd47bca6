// Sends one message through SendGrid's official SDK (@sendgrid/mail),
// pointed at Shivneri with the SDK's documented way to change the host:
// a @sendgrid/client whose default request has another baseUrl.
// Environment: SHIVNERI_URL (http://127.0.0.1:PORT), SHIVNERI_KEY.
// Prints one JSON line: {"status", "message_id", "request"}; exits 1 with
// the SDK's error on stdout when the send fails.
'use strict';
const fs = require('fs');
const path = require('path');
const client = require('@sendgrid/client');
const sgMail = require('@sendgrid/mail');
const { Mail } = require('@sendgrid/helpers').classes;

const data = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixture.json')));

function message() {
  return {
    to: [{ email: 'to1@example.com', name: 'To One' }, 'to2@example.com'],
    cc: { email: 'cc@example.com', name: 'Cee, Esq.' },
    bcc: ['hidden@example.com'],
    from: { email: 'shop@example.com', name: 'The Shop' },
    replyTo: 'help@example.com',
    subject: data.subject,
    text: data.text,
    html: data.html,
    headers: { 'X-Order': '1234', 'X-Campaign': 'spring' },
    categories: ['receipts'],
    customArgs: { user: '42' },
    attachments: [
      {
        content: data.pdf_b64,
        filename: 'invoice.pdf',
        type: 'application/pdf',
        disposition: 'attachment',
      },
      {
        content: data.png_b64,
        filename: 'logo.png',
        type: 'image/png',
        disposition: 'inline',
        content_id: 'logo',
      },
    ],
  };
}

async function main() {
  client.setApiKey(process.env.SHIVNERI_KEY);
  // After setApiKey, which sets the default host again.
  client.setDefaultRequest('baseUrl', process.env.SHIVNERI_URL);
  client.setDefaultRequest('timeout', 20000);
  sgMail.setClient(client);
  const msg = message();
  const request = Mail.create(msg).toJSON();
  try {
    const [res] = await sgMail.send(msg);
    console.log(JSON.stringify({
      status: res.statusCode,
      message_id: res.headers['x-message-id'],
      request,
    }));
  } catch (e) {
    console.log(JSON.stringify({
      error: String(e),
      status: e.code,
      body: e.response && e.response.body,
    }));
    process.exit(1);
  }
}

main();
