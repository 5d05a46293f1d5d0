import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CATEGORIES,
  HARD_CATEGORIES,
  SOFT_CATEGORIES,
  typeOfCategory,
  type Category,
  type Severity,
} from '../src/bounces/categories.js';
import {
  BounceRulesError,
  classifyReply,
  compileBounceRules,
  DEFAULT_BOUNCE_RULES_PATH,
  defaultBounceRules,
  loadBounceRules,
  type ReplyInput,
} from '../src/bounces/classifier.js';
import { classifyRecipient, type RecipientFacts } from '../src/bounces/report/recipient.js';
import { stageInText } from '../src/bounces/reply-text.js';

/**
 * Real-world replies, as providers word them (addresses, IPs and queue ids replaced by example
 * values). Each row: who sends it, the reply exactly as nodemailer or a DSN hands it over, the
 * category we expect, and the severity where it is the point of the row.
 */
interface Row {
  provider: string;
  reply: string | ReplyInput;
  category: Category;
  severity?: Severity;
  retryInNewTransaction?: boolean;
}

const lines = (...parts: string[]): string => parts.join('\r\n');
/** A row's reply for its test name: a DSN row (Status given apart) shows its Status first. */
const shown = (reply: string | ReplyInput): string => (typeof reply === 'string' ? reply : `[${reply.enhancedCode ?? '-'}] ${reply.text}`);

const ROWS: Row[] = [
  // The seven examples of issue 3, verbatim.
  { provider: 'issue 3', reply: '550 5.1.1', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'issue 3', reply: '550 Requested action not taken: mailbox unavailable', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'issue 3', reply: '554 5.7.1 Service unavailable; client host blocked using Spamhaus', category: 'spam-related', severity: 'permanent' },
  { provider: 'issue 3', reply: '452 4.2.2 Mailbox full', category: 'quota-issues', severity: 'temporary' },
  { provider: 'issue 3', reply: '421 4.7.0 Try again later, closing connection', category: 'bad-connection', severity: 'temporary' },
  { provider: 'issue 3', reply: '550-5.7.26 unauthenticated email', category: 'policy-related', severity: 'permanent' },
  { provider: 'issue 3', reply: '550 5.4.1 Recipient address rejected: Access denied', category: 'bad-mailbox', severity: 'permanent' },

  // Gmail / Google Workspace
  {
    provider: 'Gmail',
    reply: lines(
      "550-5.1.1 The email account that you tried to reach does not exist. Please try",
      "550-5.1.1 double-checking the recipient's email address for typos or",
      '550-5.1.1 unnecessary spaces. For more information, go to',
      '550 5.1.1  https://support.google.com/mail/?p=NoSuchUser d2-20020a05600c4c0200b0040e3ac8a2e1si1234567wmp.12 - gsmtp',
    ),
    category: 'bad-mailbox',
    severity: 'permanent',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.2.1 The email account that you tried to reach is disabled. Learn more at',
      '550 5.2.1  https://support.google.com/mail/?p=DisabledUser a1-20020a170906a00100b00a1b2c3d4e5fsi1234567ejb.1 - gsmtp',
    ),
    category: 'inactive-mailbox',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '552-5.2.2 The email account that you tried to reach is over quota. Please direct',
      '552-5.2.2 the recipient to',
      '552 5.2.2  https://support.google.com/mail/?p=OverQuotaPerm x12si345678qkb.3 - gsmtp',
    ),
    category: 'quota-issues',
    severity: 'permanent',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '452-4.2.2 The email account that you tried to reach is over quota. Please direct',
      '452-4.2.2 the recipient to',
      '452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp x12si345678qkb.3 - gsmtp',
    ),
    category: 'quota-issues',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '450-4.2.1 The user you are trying to contact is receiving mail at a rate that',
      '450-4.2.1 prevents additional messages from being delivered. Please resend your',
      '450-4.2.1 message at a later time. If the user is able to receive mail at that',
      '450-4.2.1 time, your message will be delivered. For more information, go to',
      '450 4.2.1  https://support.google.com/mail/?p=ReceivingRate a1si2 - gsmtp',
    ),
    category: 'quota-issues',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.7.26 This mail has been blocked because the sender is unauthenticated.',
      '550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.',
      '550-5.7.26 ',
      '550-5.7.26  Authentication results:',
      '550-5.7.26  DKIM = did not pass',
      '550-5.7.26  SPF [example.com] with ip: [192.0.2.10] = did not pass',
      '550-5.7.26 ',
      '550-5.7.26  For instructions on setting up authentication, go to',
      '550 5.7.26  https://support.google.com/mail/answer/81126#authentication a1si2 - gsmtp',
    ),
    category: 'policy-related',
    severity: 'permanent',
  },
  {
    provider: 'Gmail',
    reply: lines(
      "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's",
      '550-5.7.26 DMARC policy. Please contact the administrator of example.com domain',
      '550-5.7.26 if this was a legitimate mail. Please visit',
      '550-5.7.26  https://support.google.com/mail/answer/2451690 to learn about the',
      '550 5.7.26 DMARC initiative. a1si2 - gsmtp',
    ),
    category: 'policy-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '421-4.7.26 This mail has been rate limited because it is unauthenticated. Gmail',
      '421-4.7.26 requires all senders to authenticate with either SPF or DKIM.',
      '421 4.7.26  https://support.google.com/mail/answer/81126#authentication a1si2 - gsmtp',
    ),
    category: 'policy-related',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.7.25 [192.0.2.10] The IP address sending this message does not have a',
      '550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not',
      '550-5.7.25 point to the sending IP. As a policy, Gmail does not accept messages',
      '550-5.7.25 from IPs with missing PTR records. For more information, go to',
      '550 5.7.25  https://support.google.com/mail/answer/81126#ip-practices a1si2 - gsmtp',
    ),
    category: 'policy-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      "421-4.7.27 Your email has been rate limited because SPF authentication didn't",
      '421-4.7.27 pass for this message. Gmail requires all bulk email senders to',
      '421 4.7.27 authenticate with SPF. a1si2 - gsmtp',
    ),
    category: 'policy-related',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      "550-5.7.27 Your email has been blocked because SPF authentication didn't pass",
      '550-5.7.27 for this message. Gmail requires all bulk email senders to',
      '550 5.7.27 authenticate with SPF. a1si2 - gsmtp',
    ),
    category: 'policy-related',
    severity: 'permanent',
  },
  {
    provider: 'Gmail',
    reply: lines(
      "550-5.7.32 Your email has been blocked because the From: header (RFC5322) in",
      "550-5.7.32 this message isn't aligned with either the authenticated SPF or DKIM",
      '550 5.7.32 organizational domain. a1si2 - gsmtp',
    ),
    category: 'policy-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.7.1 [192.0.2.10] Our system has detected that this message is',
      '550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,',
      '550-5.7.1 this message has been blocked. Please visit',
      '550-5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError',
      '550 5.7.1  for more information. a1si2 - gsmtp',
    ),
    category: 'spam-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '421-4.7.0 [192.0.2.10      15] Our system has detected an unusual rate of',
      '421-4.7.0 unsolicited mail originating from your IP address. To protect our',
      '421-4.7.0 users from spam, mail sent from your IP address has been temporarily',
      '421-4.7.0 rate limited. Please visit',
      '421-4.7.0  https://support.google.com/mail/?p=UnsolicitedRateLimitError to',
      '421 4.7.0 review our Bulk Email Senders Guidelines. a1si2 - gsmtp',
    ),
    category: 'spam-related',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '421-4.7.28 [192.0.2.10      15] Gmail has detected an unusual rate of',
      '421-4.7.28 unsolicited mail originating from your DKIM domain [example.com 23].',
      '421-4.7.28 To protect our users from spam, mail sent from your domain has been',
      '421 4.7.28 temporarily rate limited. a1si2 - gsmtp',
    ),
    category: 'spam-related',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.7.1 [192.0.2.10] Gmail has detected that this message is likely',
      '550-5.7.1 suspicious due to the very low reputation of the sending IP address.',
      '550-5.7.1 To best protect our users from spam, the message has been blocked.',
      '550 5.7.1  https://support.google.com/mail/answer/188131 a1si2 - gsmtp',
    ),
    category: 'spam-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '421-4.7.0 Try again later, closing connection. (EHLO)',
      '421-4.7.0  For more information, go to',
      '421 4.7.0  https://support.google.com/a/answer/3221692 a1si2 - gsmtp',
    ),
    category: 'bad-connection',
    severity: 'temporary',
  },
  {
    provider: 'Gmail',
    reply: lines(
      "550-5.7.1 [192.0.2.10] The IP you're using to send mail is not authorized to",
      '550-5.7.1 send email directly to our servers. Please use the SMTP relay at your',
      '550-5.7.1 service provider instead. For more information, go to',
      '550 5.7.1  https://support.google.com/mail/?p=NotAuthorizedError a1si2 - gsmtp',
    ),
    category: 'policy-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '552-5.7.0 This message was blocked because its content presents a potential',
      '552-5.7.0 security issue. Please visit',
      '552-5.7.0  https://support.google.com/mail/?p=BlockedMessage to review our',
      '552 5.7.0 message content and attachment content guidelines. a1si2 - gsmtp',
    ),
    category: 'virus-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      "552-5.3.4 Your message exceeded Google's message size limits. Please visit",
      '552-5.3.4  https://support.google.com/mail/?p=MaxSizeError to view our size',
      '552 5.3.4 guidelines. a1si2 - gsmtp',
    ),
    category: 'content-related',
    severity: 'permanent',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.7.1 [192.0.2.10] Messages missing a valid messageId header are not',
      '550-5.7.1 accepted. For more information, go to',
      '550 5.7.1  https://support.google.com/mail/?p=RfcMessageNonCompliant a1si2 - gsmtp',
    ),
    category: 'content-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '550-5.7.1 This message is not RFC 5322 compliant. There are multiple From',
      '550-5.7.1 headers. To reduce the amount of spam sent to Gmail, this message has',
      '550 5.7.1 been blocked. a1si2 - gsmtp',
    ),
    // Was spam-related: the reply is about malformed headers; "spam" is Gmail's boilerplate reason for the check.
    category: 'content-related',
  },
  {
    provider: 'Gmail',
    reply: lines(
      '452-4.5.3 Your message has too many recipients. For more information regarding',
      "452-4.5.3 Google's sending limits, visit",
      '452 4.5.3  https://support.google.com/mail/?p=TooManyRecipientsError a1si2 - gsmtp',
    ),
    category: 'protocol-errors',
    severity: 'temporary',
    retryInNewTransaction: true,
  },
  { provider: 'Gmail', reply: '451-4.3.0 Mail server temporarily rejected message. a1si2 - gsmtp', category: 'other', severity: 'temporary' },
  { provider: 'Gmail', reply: '421-4.4.2 Timeout - closing connection. a1si2 - gsmtp', category: 'bad-connection' },
  { provider: 'Gmail', reply: '554 5.6.0 Mail message is malformed. Not accepted. a1si2 - gsmtp', category: 'content-related' },
  {
    provider: 'Google Workspace',
    reply: lines(
      '550-5.7.1 The user or domain that you are sending to (or from) has a policy that',
      '550-5.7.1 prohibited the mail that you sent. Please contact your domain',
      '550-5.7.1 administrator for further details. For more information, go to',
      '550 5.7.1  https://support.google.com/a/answer/172179 a1si2 - gsmtp',
    ),
    category: 'policy-related',
  },
  {
    provider: 'Google Workspace',
    reply: lines(
      '550-5.7.0 Mail relay denied [192.0.2.10]. Invalid credentials for relay for one',
      '550-5.7.0 of the domains in: example.com (as obtained from HELO and MAIL FROM).',
      "550 5.7.0 Email is being sent from a domain or IP address which isn't registered in your Workspace account. a1si2 - gsmtp",
    ),
    category: 'relaying-issues',
  },
  { provider: 'Google Workspace', reply: '421 4.7.0 IP not in whitelist for RCPT domain, closing connection. a1si2 - gsmtp', category: 'policy-related', severity: 'temporary' },
  { provider: 'Google SMTP (smarthost)', reply: '535-5.7.8 Username and Password not accepted. For more information, go to\r\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1si2 - gsmtp', category: 'bad-configuration' },

  // Outlook.com / Hotmail / Exchange Online / Microsoft 365
  { provider: 'Outlook.com', reply: '550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM1EUR01FT005.eop-EUR01.prod.protection.outlook.com]', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Hotmail (legacy)', reply: '550 Requested action not taken: mailbox unavailable (-1234567890:123:-2147467259)', category: 'bad-mailbox' },
  { provider: 'Exchange Online', reply: '550 5.4.1 Recipient address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors [DB5PEPF00014B89.eurprd02.prod.outlook.com 2024-02-05T10:11:12.123Z 08DC25F3A1B2C3D4]', category: 'bad-mailbox' },
  { provider: 'Exchange Online', reply: '550 5.4.1 [user@contoso.com]: Recipient address rejected: Access denied. AS(201806281) [SN1NAM02FT0123.eop-nam02.prod.protection.outlook.com]', category: 'bad-mailbox' },
  { provider: 'Exchange Online', reply: '550 5.4.1 Relay Access Denied ATTR36 [BN8NAM11FT012.eop-nam11.prod.protection.outlook.com]', category: 'relaying-issues' },
  { provider: 'Outlook.com', reply: "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [AM2EUR03FT011.eop-EUR03.prod.protection.outlook.com]", category: 'spam-related', severity: 'permanent' },
  { provider: 'Outlook.com', reply: "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.", category: 'spam-related' },
  { provider: 'Hotmail (legacy)', reply: "550 SC-001 (BAY004-MC1F12) Unfortunately, messages from 192.0.2.10 weren't sent. Please contact your Internet service provider since part of their network is on our block list. You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.", category: 'spam-related' },
  { provider: 'Hotmail (legacy)', reply: "550 OU-002 (SNT0-MC4-F1) Unfortunately, messages from 192.0.2.10 weren't sent. Please contact your Internet service provider. You can tell your provider to use the following information: http://mail.live.com/mail/troubleshooting.aspx#errors.", category: 'spam-related' },
  { provider: 'Outlook.com', reply: '451 4.7.650 The mail server [192.0.2.10] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) [DM6NAM10FT021.eop-nam10.prod.protection.outlook.com]', category: 'spam-related', severity: 'temporary' },
  { provider: 'Outlook.com', reply: '451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77719) [BN1NAM02FT021.eop-nam02.prod.protection.outlook.com]', category: 'bad-connection', severity: 'temporary' },
  { provider: 'Exchange Online', reply: '550 5.7.511 Access denied, banned sender[192.0.2.10]. To request removal from this list please forward this message to delist@messaging.microsoft.com. For more information please go to https://go.microsoft.com/fwlink/?LinkId=526653. AS(1410) [DM6NAM12FT045.eop-nam12.prod.protection.outlook.com]', category: 'spam-related' },
  { provider: 'Exchange Online', reply: '550 5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal from this list please visit https://sender.office.com/ and follow the directions. For more information please go to http://go.microsoft.com/fwlink/?LinkID=526655 AS(1430) [VI1EUR04FT055.eop-eur04.prod.protection.outlook.com]', category: 'spam-related' },
  { provider: 'Exchange Online', reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(7230) [HE1EUR04FT012.eop-eur04.prod.protection.outlook.com]', category: 'spam-related' },
  { provider: 'Exchange Online', reply: '550 5.7.1 Service unavailable, Client host [192.0.2.10] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.10 AS(1450) [BY2NAM01FT042.eop-nam01.prod.protection.outlook.com]', category: 'spam-related' },
  { provider: 'Exchange Online', reply: '550 5.7.501 Access denied, spam abuse detected. The sending account has been banned due to detected spam activity. For details, see Fix email delivery issues for error code 451 5.7.500-699 (ASxxx) in Microsoft 365.', category: 'spam-related' },
  { provider: 'Exchange Online', reply: '550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject. [CH2PEPF0000013D.namprd04.prod.outlook.com]', category: 'policy-related' },
  { provider: 'Exchange Online', reply: "550 5.7.515 Access denied, sending domain example.com doesn't meet the required authentication level. The sender's domain in the 5322.From address doesn't meet the authentication requirements defined for the sender.", category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.7.23 The message was rejected because of Sender Policy Framework violation', category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.7.520 Access denied, Your organization does not allow external forwarding. Please contact your administrator for further assistance. AS(7555)', category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.7.64 TenantAttribution; Relay Access Denied [SN1NAM02FT0123.eop-nam02.prod.protection.outlook.com]', category: 'relaying-issues' },
  { provider: 'Exchange Online', reply: '550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain', category: 'relaying-issues' },
  { provider: 'Exchange Online', reply: '550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(7210)', category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', category: 'bad-mailbox' },
  { provider: 'Exchange Online', reply: '550 5.1.8 Access denied, bad outbound sender. AS(42004) [BN8NAM12FT034.eop-nam12.prod.protection.outlook.com]', category: 'invalid-sender' },
  { provider: 'Exchange Online', reply: '554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot open mailbox /o=ExchangeLabs/ou=Exchange Administrative Group/cn=Recipients/cn=0123456789abcdef.[EndDiagnosticData]', category: 'quota-issues', severity: 'permanent' },
  { provider: 'Exchange Online', reply: '554 5.4.14 Hop count exceeded - possible mail loop ATTR34 [CY4PR04MB0123.namprd04.prod.outlook.com]', category: 'routing-errors' },
  { provider: 'Exchange Online', reply: '550 5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required; Delivery restriction check failed because the sender was not authenticated when sending to this group', category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.7.129 RESOLVER.RST.RestrictedToRecipientsPermission; not authorized to send to the recipient because the sender isn\'t on the allowed senders list', category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which cannot be sent via DATA', category: 'protocol-errors' },
  { provider: 'Exchange Online', reply: '554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain', category: 'bad-domain' },
  { provider: 'Exchange Online', reply: '550 5.4.316 Message expired, connection refused(Socket error code 10061)', category: 'message-expired', severity: 'permanent' },
  { provider: 'Exchange Online', reply: '450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=mx.example.com] [LastAttemptedIP=192.0.2.20:25]', category: 'no-answer-from-host' },
  { provider: 'Exchange Online', reply: '550 5.2.2 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Submission quota exceeded.', category: 'quota-issues' },
  { provider: 'Exchange Online', reply: '421 4.7.0 Temporary server error. Please try again later. PRX4 [AM5EUR02FT010.eop-EUR02.prod.protection.outlook.com]', category: 'other', severity: 'temporary' },

  // On-premises Exchange
  { provider: 'Exchange (on-prem)', reply: '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found', category: 'bad-mailbox' },
  { provider: 'Exchange (on-prem)', reply: "Remote Server returned '550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found'", category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Exchange (on-prem)', reply: '550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized', category: 'policy-related' },
  { provider: 'Exchange (on-prem)', reply: '550 5.7.1 Unable to relay', category: 'relaying-issues' },
  { provider: 'Exchange (on-prem)', reply: '530 5.7.1 Client was not authenticated', category: 'policy-related' },
  { provider: 'Exchange (on-prem)', reply: '550 5.7.1 Message rejected as spam by Content Filtering.', category: 'spam-related' },
  { provider: 'Exchange (on-prem)', reply: '452 4.3.1 Insufficient system resources', category: 'quota-issues', severity: 'temporary' },
  { provider: 'Exchange (on-prem)', reply: '452 4.5.3 Too many recipients', category: 'protocol-errors', retryInNewTransaction: true },
  { provider: 'Exchange (on-prem)', reply: '421 4.4.2 Message submission rate for this client has exceeded the configured limit', category: 'quota-issues', severity: 'temporary' },
  { provider: 'Exchange (on-prem)', reply: '550 5.7.1 Client does not have permissions to send as this sender', category: 'invalid-sender' },
  { provider: 'Exchange (on-prem)', reply: '554 5.4.6 Hop count exceeded - possible mail loop', category: 'routing-errors' },
  { provider: 'Exchange (on-prem)', reply: '550 5.3.4 Message size exceeds fixed maximum message size', category: 'content-related' },
  { provider: 'Microsoft 365 NDR', reply: "The email address you entered couldn't be found. Please check the recipient's email address and try to resend the message.", category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Microsoft 365 NDR', reply: "The recipient's mailbox is full and can't accept messages now. Please try resending this message later, or contact the recipient directly.", category: 'quota-issues', severity: 'temporary' },
  { provider: 'Microsoft 365 NDR', reply: 'The group sales only accepts messages from people in its organization or on its allowed senders list, and your email address isn\'t on the list.', category: 'policy-related' },
  { provider: 'Microsoft 365 NDR', reply: '[someone@contoso.com]: Recipient address rejected: Access denied. AS(201806281)', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Microsoft 365 NDR', reply: "Your message couldn't be delivered because delivery to this address is restricted.", category: 'policy-related' },

  // Yahoo / AOL
  { provider: 'Yahoo', reply: "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - mta1234.mail.ne1.yahoo.com", category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Yahoo', reply: '554 delivery error: dd Sorry your message to someone@yahoo.com cannot be delivered. This mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com', category: 'inactive-mailbox' },
  { provider: 'AOL', reply: '554 delivery error: dd Sorry your message to someone@aol.com cannot be delivered. This account has been disabled or discontinued [#102]. - mta1234.mail.bf1.yahoo.com', category: 'inactive-mailbox' },
  { provider: 'Yahoo', reply: '552 1 Requested mail action aborted, mailbox not found', category: 'bad-mailbox' },
  { provider: 'Yahoo', reply: '421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes', category: 'spam-related', severity: 'temporary' },
  { provider: 'Yahoo', reply: '421 4.7.0 [TSS09] All messages from 192.0.2.10 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes', category: 'spam-related', severity: 'temporary' },
  { provider: 'Yahoo', reply: "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.10, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes", category: 'spam-related', severity: 'permanent' },
  { provider: 'Yahoo', reply: '554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes', category: 'policy-related' },
  { provider: 'Yahoo', reply: '550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.', category: 'policy-related' },
  { provider: 'Yahoo', reply: '451 Message temporarily deferred - [160]', category: 'other', severity: 'temporary' },
  { provider: 'AOL (legacy)', reply: '421 4.7.1 [TS03] All messages from 192.0.2.10 will be permanently deferred; Retrying will NOT succeed. See http://postmaster.yahoo.com/421-ts03.html', category: 'spam-related', severity: 'temporary' },
  { provider: 'Yahoo', reply: '452 too many recipients', category: 'protocol-errors', severity: 'temporary', retryInNewTransaction: true },

  // iCloud
  { provider: 'iCloud', reply: '550 5.1.1 <someone@icloud.com>: user does not exist', category: 'bad-mailbox' },
  { provider: 'iCloud', reply: '552 5.2.2 <someone@icloud.com>: user is over quota (in reply to RCPT TO command)', category: 'quota-issues', severity: 'permanent' },
  { provider: 'iCloud', reply: '450 4.2.1 <someone@me.com>: user is over quota', category: 'quota-issues', severity: 'temporary' },
  { provider: 'iCloud', reply: '554 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137', category: 'policy-related' },
  { provider: 'iCloud', reply: '554 5.7.1 [HM08] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137', category: 'policy-related' },

  // Comcast
  { provider: 'Comcast', reply: '550 5.1.1 <someone@comcast.net> Not our Customer', category: 'bad-mailbox' },
  { provider: 'Comcast', reply: '554 resimta-po-30v.sys.comcast.net comcast 192.0.2.10 Comcast BL004 Blocked for spam.  Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000004', category: 'spam-related' },
  { provider: 'Comcast', reply: '554 resimta-ch2-12v.sys.comcast.net comcast 192.0.2.10 Found on Comcast BL. Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000000', category: 'spam-related' },
  { provider: 'Comcast', reply: '421 resimta-h2p-12345.sys.comcast.net comcast 192.0.2.10 Too many sessions opened', category: 'bad-connection', severity: 'temporary' },

  // GMX / web.de / IONOS (1&1)
  { provider: 'GMX', reply: '550 Requested action not taken: mailbox unavailable', category: 'bad-mailbox' },
  {
    provider: 'GMX',
    reply: lines(
      '554-gmx.net (mxgmx107) Nemesis ESMTP Service not available',
      '554-No SMTP service',
      '554-IP address is black listed.',
      '554 For explanation visit https://postmaster.gmx.net/en/case?c=r0701&i=ip&v=192.0.2.10&r=1MxxXX-1abcDE',
    ),
    category: 'spam-related',
  },
  {
    provider: 'web.de',
    reply: lines(
      '554-web.de (mxweb112) Nemesis ESMTP Service not available',
      '554-No SMTP service',
      '554-Reject due to policy restrictions.',
      '554 For explanation visit https://postmaster.web.de/en/case?c=r0103&i=ip&v=192.0.2.10&r=1MxxXX-1abcDE',
    ),
    category: 'policy-related',
  },
  { provider: 'GMX', reply: '550-Requested action not taken: mailbox unavailable\r\n550 invalid DNS MX or A/AAAA resource record', category: 'invalid-sender' },
  { provider: 'GMX', reply: '552 Requested mail action aborted: exceeded storage allocation', category: 'quota-issues' },
  { provider: 'IONOS', reply: '554-Transaction failed\r\n554-Reject due to policy restrictions.\r\n554 For explanation visit https://www.ionos.com/help/email/troubleshooting-mail-basicmail-business/', category: 'policy-related' },

  // Mail.ru / Yandex
  { provider: 'Mail.ru', reply: '550 Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru is unavailable: user not found', category: 'bad-mailbox' },
  { provider: 'Mail.ru', reply: '550 Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru is unavailable: account is disabled', category: 'inactive-mailbox' },
  { provider: 'Mail.ru', reply: '550 spam message rejected. Please visit http://help.mail.ru/notspam-support/id?c=AbCdEf or report details to abuse@corp.mail.ru. Error code: 0123456789ABCDEF.', category: 'spam-related' },
  { provider: 'Mail.ru', reply: '452 Mailbox someone@mail.ru is full', category: 'quota-issues', severity: 'temporary' },
  { provider: 'Yandex', reply: '550 5.7.1 No such user!', category: 'bad-mailbox' },
  { provider: 'Yandex', reply: '552 5.2.2 Mailbox size limit exceeded', category: 'quota-issues' },
  { provider: 'Yandex', reply: '554 5.7.1 [2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc 1698765432-AbCdEfGhIj-1', category: 'spam-related' },
  { provider: 'Yandex', reply: '550 5.7.1 Policy rejection on the target address', category: 'policy-related' },
  { provider: 'Yandex', reply: '550 5.7.1 Email rejected per DMARC policy for example.com', category: 'policy-related' },

  // Zoho / Fastmail / ProtonMail
  { provider: 'Zoho', reply: '550 5.1.1 User does not exist - <someone@zoho.com>', category: 'bad-mailbox' },
  { provider: 'Zoho', reply: '552 5.2.2 Mailbox size limit exceeded - <someone@zohomail.com>', category: 'quota-issues' },
  { provider: 'Zoho', reply: '554 5.7.7 Email policy violation detected', category: 'policy-related' },
  { provider: 'Zoho', reply: '550 5.4.6 Unrouteable address', category: 'bad-domain' },
  { provider: 'Fastmail', reply: '550 5.1.1 <someone@fastmail.com>: Recipient address rejected: User unknown in virtual mailbox table', category: 'bad-mailbox' },
  { provider: 'Fastmail', reply: '550 5.7.1 Email rejected due to security policies - https://www.fastmail.help/hc/en-us/articles/360058753594', category: 'policy-related' },
  { provider: 'Fastmail', reply: '452 4.2.2 <someone@fastmail.com>: Recipient address rejected: Mailbox is over quota', category: 'quota-issues' },
  { provider: 'ProtonMail', reply: '550 5.1.1 Address does not exist', category: 'bad-mailbox' },
  { provider: 'ProtonMail', reply: '552 5.2.2 <someone@proton.me>: Recipient address rejected: Mailbox is full', category: 'quota-issues' },
  { provider: 'ProtonMail', reply: '554 5.7.1 <someone@proton.me>: Recipient address rejected: Message was identified as spam', category: 'spam-related' },

  // Proofpoint / Mimecast / Barracuda / Cisco / Symantec / Trend Micro / SpamExperts
  { provider: 'Proofpoint', reply: '550 5.1.1 User Unknown', category: 'bad-mailbox' },
  { provider: 'Proofpoint', reply: '554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.10', category: 'spam-related' },
  { provider: 'Proofpoint', reply: '553 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=192.0.2.10', category: 'spam-related' },
  { provider: 'Proofpoint', reply: '550 5.7.1 Message blocked due to spam content in the message', category: 'spam-related' },
  { provider: 'Mimecast', reply: '550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGhIjKlMnOpQrStUv.uk123]', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Mimecast', reply: '550 Rejected by header based Anti-Spoofing policy: someone@example.com - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGhIjKl.uk123]', category: 'policy-related' },
  { provider: 'Mimecast', reply: '550 Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGhIjKl.uk123]', category: 'policy-related' },
  { provider: 'Mimecast', reply: '554 Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554 [AbCdEfGhIjKl.us123]', category: 'policy-related' },
  { provider: 'Mimecast', reply: '451 Internal resource temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451 [AbCdEfGhIjKl.us123]', category: 'other', severity: 'temporary' },
  { provider: 'Mimecast', reply: '550 Virus Detected - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGhIjKl.uk123]', category: 'virus-related' },
  { provider: 'Mimecast', reply: '451 Please try again later - greylisting in action - https://community.mimecast.com/docs/DOC-1369#451 [AbCdEfGhIjKl.uk123]', category: 'other', severity: 'temporary' },
  { provider: 'Barracuda', reply: '554 Service unavailable; Client host [192.0.2.10] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.10', category: 'spam-related' },
  { provider: 'Barracuda', reply: '550 No such user (someone@example.com)', category: 'bad-mailbox' },
  { provider: 'Barracuda', reply: '550 permanent failure for one or more recipients (someone@example.com:blocked)', category: 'policy-related' },
  { provider: 'Barracuda', reply: '554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using b.barracudacentral.org', category: 'spam-related' },
  { provider: 'Cisco Secure Email (IronPort)', reply: '550 #5.1.0 Address rejected.', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Cisco Secure Email (IronPort)', reply: "554 5.7.1 Your access to this mail system has been rejected due to the sending MTA's poor reputation. If you believe that this failure is in error, please contact the intended recipient via alternate means.", category: 'spam-related' },
  { provider: 'Cisco Secure Email (IronPort)', reply: '452 Too many recipients received this hour', category: 'quota-issues', severity: 'temporary' },
  { provider: 'Cisco Secure Email (IronPort)', reply: '554 Message refused.', category: 'policy-related' },
  { provider: 'Cisco Secure Email (IronPort)', reply: '550 5.7.1 Message rejected due to content restrictions', category: 'content-related' },
  {
    provider: 'Symantec MessageLabs',
    reply: lines(
      '553-SPF (Sender Policy Framework) domain authentication',
      '553-fail. Refer to the Troubleshooting page at',
      '553-http://www.symanteccloud.com/troubleshooting for more',
      '553 information. (#5.7.1)',
    ),
    category: 'policy-related',
  },
  { provider: 'Symantec MessageLabs', reply: '550-Invalid recipient <someone@example.com>\r\n550 (#5.1.1)', category: 'bad-mailbox' },
  {
    provider: 'Symantec MessageLabs',
    reply: lines(
      '553-you are trying to use me [server-1.tower-123.messagelabs.com] as a relay, but',
      '553-I have not been configured to let you [192.0.2.10, mail.example.com] do this.',
      '553-Please visit www.symanteccloud.com/troubleshooting for more details about this',
      '553 error message and instructions to resolve this issue. (#5.7.1)',
    ),
    category: 'relaying-issues',
  },
  { provider: 'Trend Micro', reply: '550 5.7.1 Mail from 192.0.2.10 refused, see http://www.mail-abuse.com/cgi-bin/lookup?ip_address=192.0.2.10', category: 'spam-related' },
  { provider: 'SpamExperts', reply: '554 5.7.1 Message rejected because of unacceptable content. For help, please quote incident ID 12345678.', category: 'content-related' },

  // Postfix
  { provider: 'Postfix', reply: '550 5.1.1 <x@y>: Recipient address rejected: User unknown', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'Postfix', reply: '550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in local recipient table', category: 'bad-mailbox' },
  { provider: 'Postfix', reply: '550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in virtual alias table', category: 'bad-mailbox' },
  { provider: 'Postfix', reply: '554 5.7.1 <someone@example.org>: Relay access denied', category: 'relaying-issues' },
  { provider: 'Postfix', reply: '450 4.1.2 <someone@nonexistent.example>: Recipient address rejected: Domain not found', category: 'bad-domain', severity: 'temporary' },
  { provider: 'Postfix', reply: '450 4.1.8 <sender@nonexistent.example>: Sender address rejected: Domain not found', category: 'invalid-sender', severity: 'temporary' },
  { provider: 'Postfix', reply: '553 5.1.8 <sender@example.com>: Sender address rejected: not owned by user someone', category: 'invalid-sender' },
  { provider: 'Postfix', reply: '554 5.7.1 <sender@example.com>: Sender address rejected: Access denied', category: 'invalid-sender' },
  { provider: 'Postfix', reply: '554 5.7.1 <someone@example.com>: Recipient address rejected: Access denied', category: 'policy-related' },
  { provider: 'Postfix', reply: '554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10', category: 'spam-related' },
  { provider: 'Postfix', reply: '554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using bl.spamcop.net; Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.10', category: 'spam-related' },
  { provider: 'Postfix', reply: '554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using dnsbl.sorbs.net; Currently Sending Spam See: http://www.sorbs.net/lookup.shtml?192.0.2.10', category: 'spam-related' },
  { provider: 'Postfix', reply: '552 5.3.4 Message size exceeds fixed limit', category: 'content-related', severity: 'permanent' },
  { provider: 'Postfix', reply: '452 4.5.3 Error: too many recipients', category: 'protocol-errors', severity: 'temporary', retryInNewTransaction: true },
  { provider: 'Postfix', reply: '452 4.3.1 Insufficient system storage', category: 'quota-issues', severity: 'temporary' },
  { provider: 'Postfix', reply: '451 4.3.0 <someone@example.com>: Temporary lookup failure', category: 'other', severity: 'temporary' },
  { provider: 'Postfix (postgrey)', reply: '450 4.2.0 <someone@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html', category: 'other', severity: 'temporary' },
  { provider: 'Postfix', reply: '450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.10]', category: 'policy-related', severity: 'temporary' },
  { provider: 'Postfix', reply: '504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname', category: 'policy-related' },
  { provider: 'Postfix', reply: '550 5.7.1 <someone@example.com>: Recipient address rejected: Message rejected due to: SPF fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=sender@example.com;ip=192.0.2.10;r=<UNKNOWN>', category: 'policy-related' },
  { provider: 'Postfix', reply: '554 5.7.1 <unknown[192.0.2.10]>: Client host rejected: Access denied', category: 'policy-related' },
  { provider: 'Postfix', reply: '550 5.1.1 <someone@example.com>: Recipient address rejected: undeliverable address: host mx.example.com[192.0.2.20] said: 550 5.1.1 <someone@example.com>... User unknown (in reply to RCPT TO command)', category: 'bad-mailbox' },
  { provider: 'Postfix', reply: '554 5.4.0 Error: too many hops', category: 'routing-errors' },
  { provider: 'Postfix', reply: '421 4.7.0 mail.example.com Error: too many errors', category: 'bad-connection', severity: 'temporary' },
  { provider: 'Postfix', reply: '503 5.5.1 Error: need MAIL command', category: 'protocol-errors' },
  { provider: 'Postfix', reply: '500 5.5.2 Error: bad syntax', category: 'protocol-errors' },
  { provider: 'Postfix', reply: '550 5.7.0 Must issue a STARTTLS command first', category: 'bad-configuration' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; mail for example.com loops back to myself', category: 'routing-errors' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; Host or domain name not found. Name service error for name=example.invalid type=MX: Host not found, try again', category: 'bad-domain', severity: 'temporary' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; connect to mx.example.com[192.0.2.20]:25: Connection timed out', category: 'no-answer-from-host', severity: 'temporary' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; connect to mx.example.com[192.0.2.20]:25: Connection refused', category: 'no-answer-from-host' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; lost connection with mx.example.com[192.0.2.20] while receiving the initial server greeting', category: 'bad-connection' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; conversation with mx.example.com[192.0.2.20] timed out while sending end of data -- message may be sent more than once', category: 'bad-connection' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; delivery temporarily suspended: connect to mx.example.com[192.0.2.20]:25: No route to host', category: 'no-answer-from-host' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; TLS is required, but was not offered by host mx.example.com[192.0.2.20]', category: 'bad-configuration' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; Cannot start TLS: handshake failure', category: 'bad-connection' },

  // Exim / cPanel
  { provider: 'Exim', reply: '550 Unrouteable address', category: 'bad-domain' },
  { provider: 'Exim', reply: '550-Verification failed for <sender@example.com>\n550-Unrouteable address\n550 Sender verify failed', category: 'invalid-sender' },
  { provider: 'Exim', reply: '550 Administrative prohibition', category: 'policy-related' },
  { provider: 'cPanel (Exim)', reply: '550 No Such User Here', category: 'bad-mailbox' },
  { provider: 'cPanel (Exim)', reply: '550 The mail server could not deliver mail to someone@example.com.  The account or domain may not exist, they may be blacklisted, or missing the proper dns entries.', category: 'bad-mailbox' },
  { provider: 'Exim', reply: '550 rejected because 192.0.2.10 is in a black list at zen.spamhaus.org', category: 'spam-related' },
  { provider: 'Exim', reply: '550 JunkMail rejected - mail.example.com [192.0.2.10]:25 is in an RBL: Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.10', category: 'spam-related' },
  { provider: 'Exim', reply: '451 Temporary local problem - please try later', category: 'other', severity: 'temporary' },
  { provider: 'Exim', reply: '550 This message contains a virus (Eicar-Test-Signature) and has been rejected', category: 'virus-related' },
  { provider: 'Exim', reply: '550 relay not permitted, authentication required', category: 'relaying-issues' },
  { provider: 'Exim', reply: '552 Message size exceeds maximum permitted', category: 'content-related' },
  { provider: 'Exim', reply: '452 4.2.2 someone@example.com: mailbox is full', category: 'quota-issues' },
  { provider: 'Exim', reply: '550 5.2.2 someone@example.com: Mailbox quota exceeded', category: 'quota-issues' },
  { provider: 'Exim', reply: '451-192.0.2.10 is not yet authorized to deliver mail from\r\n451 <sender@example.com> to <someone@example.com>. Please try later.', category: 'other', severity: 'temporary' },

  // Sendmail
  { provider: 'Sendmail', reply: '550 5.1.1 <someone@example.com>... User unknown', category: 'bad-mailbox' },
  { provider: 'Sendmail', reply: '553 5.1.8 <sender@example.com>... Domain of sender address sender@nonexistent.example does not exist', category: 'invalid-sender' },
  { provider: 'Sendmail', reply: '451 4.1.8 Domain of sender address sender@example.com does not resolve', category: 'invalid-sender', severity: 'temporary' },
  { provider: 'Sendmail', reply: '550 5.7.1 <someone@example.org>... Relaying denied. Proper authentication required.', category: 'relaying-issues' },
  { provider: 'Sendmail', reply: '452 4.4.5 Insufficient disk space; try again later', category: 'quota-issues', severity: 'temporary' },
  { provider: 'Sendmail', reply: '554 5.4.6 Too many hops 26 (25 max): from <sender@example.com> via localhost, to <someone@example.com>', category: 'routing-errors' },
  { provider: 'Sendmail', reply: '552 5.2.3 Message exceeds maximum fixed size (10485760)', category: 'content-related' },
  { provider: 'Sendmail', reply: '501 5.1.3 Bad recipient address syntax', category: 'bad-mailbox' },
  { provider: 'Sendmail', reply: '553 5.0.0 sender@localhost... Real domain name required for sender address', category: 'invalid-sender' },
  { provider: 'Sendmail', reply: '554 5.0.0 Service unavailable', category: 'other', severity: 'permanent' },
  { provider: 'Sendmail', reply: '421 4.3.2 Connection rate limit exceeded.', category: 'bad-connection', severity: 'temporary' },
  { provider: 'Sendmail (DSN)', reply: 'Deferred: Connection timed out with mx.example.com.', category: 'no-answer-from-host', severity: 'temporary' },

  // qmail / vpopmail
  { provider: 'qmail', reply: '550 sorry, no mailbox here by that name. (#5.1.1)', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'qmail', reply: "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", category: 'relaying-issues' },
  { provider: 'qmail', reply: '552 sorry, that message size exceeds my databytes limit (#5.3.4)', category: 'content-related' },
  { provider: 'qmail', reply: '451 qq temporary problem (#4.3.0)', category: 'other', severity: 'temporary' },
  { provider: 'qmail', reply: '553 sorry, your envelope sender domain must exist (#5.7.1)', category: 'invalid-sender' },
  { provider: 'qmail', reply: "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", category: 'no-answer-from-host', severity: 'temporary' },
  { provider: 'qmail', reply: "Sorry. Although I'm listed as a best-preference MX or A for that host, it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)", category: 'routing-errors', severity: 'permanent' },
  { provider: 'qmail', reply: "Sorry, I couldn't find any host named example.invalid. (#5.1.2)", category: 'bad-domain', severity: 'permanent' },
  { provider: 'qmail', reply: 'This message is looping: it already has my Delivered-To line. (#5.4.6)', category: 'routing-errors' },
  { provider: 'vpopmail', reply: 'The users mailfolder is over the allowed quota (size). (#5.2.2)', category: 'quota-issues', severity: 'permanent' },
  { provider: 'qmail', reply: "I'm not going to try again; this message has been in the queue too long.", category: 'message-expired', severity: 'permanent' },

  // European providers
  { provider: 'Orange', reply: "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]", category: 'bad-mailbox' },
  { provider: 'Orange', reply: '552 5.2.2 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]', category: 'quota-issues' },
  { provider: 'Orange', reply: '421 mwinf5c10 ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR005_104 [104]', category: 'bad-connection', severity: 'temporary' },
  { provider: 'Orange', reply: '554 5.7.1 Mail rejete. Mail rejected. OFR004_104 [104]', category: 'policy-related' },
  { provider: 'Free.fr', reply: '421 4.7.0 Too many spams from your IP (192.0.2.10), please visit http://postmaster.free.fr/', category: 'spam-related', severity: 'temporary' },
  { provider: 'Free.fr', reply: '550 5.1.1 <someone@free.fr>: Recipient address rejected: User unknown in virtual mailbox table', category: 'bad-mailbox' },
  { provider: 'Libero', reply: '550 5.2.1 <someone@libero.it>: Recipient address rejected: Mailbox disabled, not accepting messages', category: 'inactive-mailbox' },
  { provider: 'Libero', reply: '550 5.7.1 [192.0.2.10] Your IP address 192.0.2.10 has been blocked due to poor reputation', category: 'spam-related' },
  { provider: 'T-Online', reply: '554 IP=192.0.2.10 - A problem occurred. (Ask your postmaster for help or to contact tosa@rx.t-online.de to clarify.)', category: 'spam-related' },
  { provider: 'T-Online', reply: '552 5.2.2 Quota exceeded (mailbox for user is full)', category: 'quota-issues' },
  { provider: 'T-Online', reply: '550 5.1.1 <someone@t-online.de>: Recipient address rejected: unknown user', category: 'bad-mailbox' },

  // Asian providers
  { provider: 'QQ Mail', reply: '550 Mailbox not found. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000728', category: 'bad-mailbox' },
  { provider: 'QQ Mail', reply: '550 Mail content denied. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000726', category: 'content-related' },
  { provider: 'QQ Mail', reply: '550 Ip frequency limited. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000722', category: 'quota-issues', severity: 'permanent' },
  { provider: 'QQ Mail', reply: '550 Connection frequency limited. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000723', category: 'bad-connection' },
  { provider: 'NetEase 163', reply: '550 User not found: someone@163.com', category: 'bad-mailbox' },
  { provider: 'NetEase 163', reply: '554 DT:SPM 163 smtp14,EsCowAD3m3xVp7NlAbCdEf--.12345S2 1701234567, please see http://mail.163.com/help/help_spam_16.htm?ip=192.0.2.10&hostid=smtp14&time=1701234567', category: 'spam-related' },
  { provider: 'Naver', reply: '550 5.1.1 <someone@naver.com>: Recipient address rejected: User unknown', category: 'bad-mailbox' },
  { provider: 'Naver', reply: '421 4.4.2 mx.naver.com Error: timeout exceeded', category: 'bad-connection', severity: 'temporary' },

  // Filters and generic MTAs
  { provider: 'amavis', reply: '554 5.7.0 Reject, id=12345-01 - SPAM', category: 'spam-related' },
  { provider: 'amavis', reply: '554 5.7.0 Reject, id=12345-01 - INFECTED: Eicar-Signature', category: 'virus-related' },
  { provider: 'amavis', reply: '554 5.7.0 Reject, id=12345-01 - BANNED: P=p003,L=1,M=multipart/mixed | P=p002,L=1/2,M=application/x-msdownload,T=exe,N=setup.exe', category: 'content-related' },
  { provider: 'Rspamd', reply: '554 5.7.1 Spam message rejected', category: 'spam-related' },
  { provider: 'Rspamd', reply: '451 4.7.1 Try again later', category: 'other', severity: 'temporary' },
  { provider: 'Lotus Domino', reply: '550 5.0.0 someone@example.com... User someone (someone@example.com) not listed in Domino Directory', category: 'bad-mailbox' },
  { provider: 'hMailServer', reply: '550 Unknown user', category: 'bad-mailbox' },
  { provider: 'MDaemon', reply: '552 Message size exceeds fixed maximum message size', category: 'content-related' },
  { provider: 'generic', reply: '552 5.5.3 Too many recipients', category: 'protocol-errors', severity: 'temporary', retryInNewTransaction: true },
  { provider: 'generic', reply: '550 5.1.6 Recipient addresses in this domain no longer accept mail', category: 'inactive-mailbox' },
  { provider: 'generic', reply: '521 5.3.2 mx.example.com does not accept mail', category: 'bad-domain' },
  { provider: 'generic', reply: '556 5.1.10 Recipient address has null MX', category: 'bad-domain' },
  { provider: 'generic', reply: '550 5.7.27 Sender address has null MX', category: 'invalid-sender' },
  { provider: 'generic', reply: '550 Too many invalid recipients', category: 'other' },
  { provider: 'generic', reply: '551 User not local; please try <someone@example.net>', category: 'inactive-mailbox' },
  { provider: 'generic', reply: '550 5.7.1 Message contains a prohibited attachment type', category: 'content-related' },
  { provider: 'Google (DSN)', reply: 'DNS Error: Domain name not found', category: 'bad-domain' },
  {
    provider: 'Google (DSN)',
    reply: 'The recipient server did not accept our requests to connect. Learn more at https://support.google.com/mail/answer/7720 [mx.example.com. 192.0.2.20: timed out]',
    category: 'no-answer-from-host',
  },

  // Added with the DSN-corpus pass (docs/bounce-classification.md, "Wordings the DSN corpus taught us").
  { provider: 'au/KDDI', reply: '550 : User unknown', category: 'policy-related', severity: 'permanent' },
  { provider: 'au/KDDI (DSN)', reply: 'smtp; 550 : User unknown', category: 'policy-related' },
  { provider: 'au/KDDI via Exim', reply: 'SMTP error from remote mail server after end of data: host lsean.ezweb.ne.jp [192.0.2.228]: 550 : User unknown', category: 'policy-related' },
  { provider: 'au/KDDI (RCPT stage)', reply: '550 <someone@ezweb.ne.jp>: User unknown', category: 'bad-mailbox' },
  { provider: 'au', reply: '550 <someone@au.example.jp>: Recipient address rejected.', category: 'bad-mailbox', severity: 'permanent' },
  { provider: 'NTT docomo (DSN)', reply: { code: 550, enhancedCode: '5.2.0', text: '550 Unknown user someone@docomo.example.ne.jp' }, category: 'policy-related' },
  { provider: 'Amazon SES inbound', reply: '550 5.2.0 Message Filtered', category: 'policy-related' },
  { provider: 'Facebook', reply: '550 5.1.1 RCP-P2 http://postmaster.facebook.com/response_codes?ip=192.0.2.135#rcp Refused due to recipient preferences', category: 'policy-related' },
  { provider: 'Exchange Online', reply: '550 5.4.1 All recipient addresses rejected : Access denied [AM0PR01MB1234.eurprd01.prod.protection.outlook.com]', category: 'policy-related' },
  { provider: 'Google Groups', reply: "We're writing to let you know that the group you tried to contact (staff) may not exist, or you may not have permission to post messages to the group.", category: 'policy-related' },
  { provider: 'Google Groups (zh-TW)', reply: '我們謹此通知，您試圖聯絡的「staff」群組可能不存在，或者您沒有在此群組張貼留言的權限。', category: 'policy-related' },
  { provider: 'Cox', reply: '550 5.1.0 <bounce@example.com> sender rejected. Refer to Error Codes section at https://www.cox.com/residential/support/email-error-codes.html for more information. AUP#CDRBL', category: 'spam-related' },
  { provider: 'Orange', reply: '421 mwinf5c77 ME Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR_999 [999]', category: 'spam-related', severity: 'temporary' },
  { provider: 'La Poste', reply: '550 5.5.0 Service refuse. Veuillez essayer plus tard. service refused, please try later. LPN001_108', category: 'spam-related', severity: 'permanent' },
  { provider: 'Orange', reply: '421 4.2.0 Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR005_505 [505]', category: 'other', severity: 'temporary' },
  { provider: 'La Poste', reply: '550 5.5.0 Le compte du destinataire est bloque. The recipient account is blocked. LPN007_426', category: 'inactive-mailbox' },
  { provider: 'fml', reply: 'Duplicated Message-ID', category: 'other' },
  { provider: 'Gmail', reply: lines('550-5.7.1 [192.0.2.222      13] Messages with multiple addresses in From:', '550 5.7.1 header are not accepted. a1si2 - gsmtp'), category: 'content-related' },
  { provider: 'Amazon SES', reply: "554 Transaction failed: Duplicate header 'DKIM-Signature'.", category: 'content-related' },
  { provider: 'Exim', reply: '"Sorry, you are sending to/from an address that has been blacklisted"', category: 'policy-related' },
  { provider: 'Amazon SES (smarthost)', reply: '554 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: sender@example.com', category: 'relaying-issues' },
  { provider: 'MessageLabs', reply: '550-Please turn on SMTP Authentication in your mail client.', category: 'bad-configuration' },
  { provider: 'pobox SPF check', reply: '550 Bad SPF records for [example.org:192.0.2.2], see http://spf.pobox.com/', category: 'policy-related' },
  { provider: 'sendmail', reply: '450 4.7.1 Access denied. IP name lookup failed [192.0.2.222]', category: 'policy-related', severity: 'temporary' },
  { provider: 'Outlook.com', reply: '550 domain [example.com] mismatches client ip 192.0.2.225.', category: 'policy-related' },
  { provider: 'Yahoo', reply: '554 INVALID IP FOR SENDING MAIL OF DOMAIN example.com [RCPT_TO]', category: 'policy-related' },
  { provider: 'Exim', reply: 'SMTP error from remote mail server after MAIL FROM:<sender@example.com> SIZE=1024: 450 service permits 2 unverifyable sending IPs - example.com is not 192.0.2.222', category: 'policy-related' },
  { provider: 'Exim', reply: 'SMTP error from remote mail server after MAIL FROM:<sender@example.com> SIZE=1024: 550 Unroutable sender address', category: 'invalid-sender' },
  { provider: 'Exim', reply: 'SMTP error from remote mail server after MAIL FROM:<sender@example.com>: 550 5.1.7 No such domain example.com.', category: 'invalid-sender' },
  { provider: 'Exim', reply: 'SMTP error from remote mail server after MAIL FROM:<sender@example.com> SIZE=1543: 550 5.7.0 <sender@example.com>... Please use the smtp server of your ISP.', category: 'policy-related' },
  { provider: 'Exim', reply: 'SMTP error from remote mail server after initial connection: 554 mx.example.net : You\'ve reached your daily relay quota - 192.0.2.0', category: 'policy-related' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; delivery temporarily suspended: host mx.example.net[192.0.2.127] refused to talk to me: 421 Service not available, closing transmission channel', category: 'policy-related', severity: 'temporary' },
  { provider: 'iCloud', reply: '554 mx.example.com ESMTP not accepting connections', category: 'policy-related' },
  { provider: 'Postfix (DSN)', reply: 'X-Postfix; Name service error for name=example.org type=MX: Malformed or unexpected name server reply', category: 'routing-errors' },
  { provider: 'sendmail', reply: 'Deferred: Name server: example.co.jp.: host name lookup failure', category: 'routing-errors' },
  { provider: 'Google (DSN)', reply: { code: null, enhancedCode: '4.0.0', text: "smtp; DNS Error: 80335577 DNS type 'mx' lookup of example.jp responded with code NXDOMAIN Domain name not found: example.jp" }, category: 'routing-errors', severity: 'temporary' },
  { provider: 'Outlook.com', reply: '554 The mail could not be delivered to the recipient because the domain is not reachable. Please check the domain and try again (-1915321397:308:-2147467259)', category: 'bad-domain' },
  { provider: 'procmail (DSN)', reply: 'x-unix; procmail: Couldn\'t create "/var/spool/mail/someone" id: mx.example.org: No such user', category: 'bad-configuration' },
  { provider: 'sendmail (DSN)', reply: { code: null, enhancedCode: '4.5.0', text: 'X-Unix; 71' }, category: 'bad-configuration', severity: 'temporary' },
  { provider: 'Postfix', reply: '554 5.3.0 <someone@example.net>: Recipient address rejected: Mailer error', category: 'bad-configuration' },
  { provider: 'qmail-ldap', reply: "Unable to contact LDAP server. (#4.4.3)I'm not going to try again; this message has been in the queue too long.", category: 'other' },
  { provider: 'Amazon WorkMail', reply: '550 5.3.5 <someone@example.org>... Internal System error', category: 'other' },
  { provider: 'OpenSMTPD', reply: 'Envelope expired', category: 'message-expired' },
  { provider: 'DragonFly dma', reply: 'Could not deliver for the last 432000 seconds. Giving up.', category: 'message-expired' },
  { provider: 'IMail', reply: 'Delivery failed 20 attempts', category: 'message-expired' },
  { provider: 'Exim', reply: 'retry time not reached for any host after a long failure period', category: 'message-expired' },
  { provider: 'Oracle Messaging Server', reply: 'Reason: unable to deliver this message after 1 day Delivery attempt history for your mail: TCP active open: Failed connect() to TCP port 25 of 192.0.2.240 Error: Connection timed out', category: 'message-expired' },
  { provider: 'Gmail (delay notice)', reply: 'Message will be retried for 2 more day(s) Technical details of temporary failure: The recipient server did not accept our requests to connect.', category: 'message-expired' },
  { provider: 'Gmail', reply: '500 Remote server does not support TLS (state 6).', category: 'bad-configuration' },
  { provider: 'Exim', reply: '<other@example.net>: malformed address: <other@example.net> may not follow someone@example.com', category: 'protocol-errors' },
  { provider: 'generic', reply: '503 5.5.0 Improper sequence of commands', category: 'protocol-errors' },
  { provider: 'Postfix', reply: '550 5.6.0 <someone@example.net>: Recipient address rejected: Media error', category: 'content-related' },
  { provider: 'generic (DSN)', reply: { code: null, enhancedCode: '5.5.0', text: '' }, category: 'other' },
  { provider: 'mail-to-fax gateway', reply: "550 'someone@example.com' is not a registered gateway user", category: 'policy-related' },
  {
    provider: 'Amazon SES (DSN)',
    reply: "smtp; 5.1.0 - Unknown address error 550-'5.7.1 <bounce@email-bounces.example.com>... Access denied' (delivery attempts: 0)",
    category: 'policy-related',
  },
];

/**
 * Phrase families of config/bounce-rules.json, one table each: replies written from the wording of
 * the family's `source` (an RFC, a provider's published list, an MTA's source), not from samples.
 */
const FAMILIES: Record<string, Row[]> = {
  'expiry (RFC 3463 X.4.7, Exim, Sendmail, qmail, Exchange, Postfix delay template)': [
    { provider: 'Exim', reply: 'retry timeout exceeded', category: 'message-expired' },
    { provider: 'Exim', reply: { enhancedCode: '5.0.0', text: 'Connection timed out: retry timeout exceeded' }, category: 'message-expired', severity: 'permanent' },
    { provider: 'Exchange Online', reply: '550 4.4.7 QUEUE.Expired; message expired', category: 'message-expired' },
    { provider: 'Exchange', reply: 'The server has tried delivering this message, without success, and has stopped trying.', category: 'message-expired' },
    { provider: 'Sendmail', reply: 'Cannot send message for 5 days', category: 'message-expired' },
    { provider: 'Sendmail', reply: 'Warning: could not send message for past 4 hours', category: 'message-expired' },
    { provider: 'Postfix', reply: 'Your message could not be delivered for more than 4 hour(s).', category: 'message-expired' },
    { provider: 'qmail', reply: "I'm not going to try again; this message has been in the queue too long.", category: 'message-expired' },
    { provider: 'RFC 3463', reply: { enhancedCode: '4.4.7', text: '' }, category: 'message-expired', severity: 'temporary' },
    { provider: 'OpenSMTPD', reply: 'Envelope expired', category: 'message-expired' },
    { provider: 'generic', reply: 'Delivery time limit reached', category: 'message-expired' },
    { provider: 'generic', reply: 'maximum number of delivery attempts exceeded', category: 'message-expired' },
    { provider: 'Sendmail', reply: { enhancedCode: '5.0.0', text: 'Could not deliver for the last 5 days' }, category: 'message-expired' },
    { provider: 'generic', reply: 'Delivery failed after 12 attempts', category: 'message-expired' },
    { provider: 'generic', reply: 'Message undeliverable after 30 retries', category: 'message-expired' },
    { provider: 'generic', reply: { enhancedCode: '4.0.0', text: 'unable to deliver after 3 days' }, category: 'message-expired', severity: 'temporary' },
    { provider: 'generic', reply: 'The message has been undeliverable for 48 hours', category: 'message-expired' },
    { provider: 'generic', reply: 'unable to deliver message within the allowed time', category: 'message-expired' },
    { provider: 'Exchange Server', reply: 'Could not deliver the message in the time limit specified. Please retry or contact your administrator.', category: 'message-expired' },
    { provider: 'generic', reply: 'The time limit was exceeded', category: 'message-expired' },
    { provider: 'Courier', reply: 'This message has been in the queue for too long', category: 'message-expired' },
    { provider: 'generic', reply: 'Exceeded the maximum number of delivery attempts', category: 'message-expired' },
    { provider: 'Exim', reply: 'all hosts for example.com have been failing for a long time and were last tried after this message arrived', category: 'message-expired' },
    { provider: 'generic', reply: 'The remote server did not respond for 5 days; delivery has been abandoned', category: 'message-expired' },
  ],
  'mailbox full (RFC 3463 X.2.2, Postfix, Dovecot, qmail, Gmail, Exchange)': [
    { provider: 'qmail', reply: "Sorry, the user's maildir has overdrawn his diskspace quota, please try again later.", category: 'quota-issues' },
    { provider: 'Dovecot', reply: { enhancedCode: '5.0.0', text: 'Quota exceeded (mailbox for user is full)' }, category: 'quota-issues' },
    { provider: 'Exchange', reply: "550 5.0.0 The recipient's mailbox is full and can't accept messages now.", category: 'quota-issues' },
    { provider: 'generic', reply: '550 5.7.1 Inbox full', category: 'quota-issues' },
    { provider: 'generic', reply: { enhancedCode: '5.0.0', text: 'user is over the quota' }, category: 'quota-issues' },
    { provider: 'generic', reply: '550 Mailbox quota usage exceeded', category: 'quota-issues' },
    { provider: 'Gmail', reply: "452 4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to manage their storage.", category: 'quota-issues', severity: 'temporary' },
  ],
  'inactive mailbox (RFC 3463 X.2.1, Gmail, Yahoo, Mail.ru, Exchange)': [
    { provider: 'generic', reply: '550 5.0.0 This account is not active', category: 'inactive-mailbox' },
    { provider: 'Exchange', reply: '550 5.2.1 RESOLVER.ADR.RecipientDisabled; recipient is disabled', category: 'inactive-mailbox' },
    { provider: 'generic', reply: { enhancedCode: '5.0.0', text: 'mailbox has been suspended due to inactivity' }, category: 'inactive-mailbox' },
    { provider: 'generic', reply: '550 5.7.1 account has expired', category: 'inactive-mailbox' },
    { provider: 'GMX', reply: '550 5.0.0 mailbox temporarily disabled', category: 'inactive-mailbox' },
    { provider: 'generic', reply: '550 5.0.0 Addressee has been deactivated', category: 'inactive-mailbox' },
  ],
  'sender refused (Postfix, Exim, Exchange Online 5.7.60)': [
    { provider: 'Exchange Online', reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender', category: 'invalid-sender' },
    { provider: 'generic', reply: '550 5.7.1 You are not permitted to send mail as this address', category: 'invalid-sender' },
    { provider: 'generic', reply: '553 5.7.1 Sender is not authorized', category: 'invalid-sender' },
    { provider: 'generic', reply: '554 5.7.1 Sender address someone@example.com rejected: domain does not resolve', category: 'invalid-sender' },
  ],
  'no permission to send or post (Exchange Online 5.7.1, Google Groups)': [
    { provider: 'Exchange Online', reply: "550 5.7.1 Delivery not authorized: you don't have permission to send to this recipient", category: 'policy-related' },
    { provider: 'Google Groups', reply: 'The group you tried to contact may not exist, or you may not have permission to post messages to the group.', category: 'policy-related' },
    { provider: 'generic', reply: { enhancedCode: '5.0.0', text: 'You do not have permission to send to this distribution list' }, category: 'policy-related' },
  ],
  'service refused (Orange / La Poste postmaster)': [
    { provider: 'Orange', reply: '421 Service refuse. Veuillez essayer plus tard. Service refused, please try later.', category: 'policy-related', severity: 'temporary' },
    { provider: 'generic', reply: { enhancedCode: '4.0.0', text: 'Service temporarily denied, try again later' }, category: 'policy-related', severity: 'temporary' },
    { provider: 'generic', reply: { enhancedCode: '5.0.0', text: 'Mailbox unavailable or access denied' }, category: 'bad-mailbox' },
  ],
  'SMTP authentication required (RFC 4954, MessageLabs)': [
    { provider: 'RFC 4954', reply: '530 5.7.0 You must authenticate first', category: 'bad-configuration' },
    { provider: 'generic', reply: { enhancedCode: '5.0.0', text: 'SMTP authentication is required for relaying' }, category: 'bad-configuration' },
    { provider: 'generic', reply: '550 Please enable SMTP authentication in your mail client', category: 'bad-configuration' },
  ],
  'provider codes (Comcast, Mimecast)': [
    { provider: 'Comcast', reply: '421 4.7.0 192.0.2.1 temporarily deferred, see http://postmaster.comcast.net/smtp-error-codes.php#RL000001', category: 'quota-issues', severity: 'temporary' },
    { provider: 'Comcast', reply: '554 comcast 192.0.2.1 see http://postmaster.comcast.net/smtp-error-codes.php#ES000010', category: 'policy-related' },
    { provider: 'generic', reply: '421 4.0.0 Mail from dynamic IP space, use the mail server of your provider', category: 'policy-related', severity: 'temporary' },
    { provider: 'Mimecast', reply: '554 Email rejected due to security policies - MCSpamSignature.sa.12.345', category: 'spam-related' },
  ],
  'DNS failure (Exchange Online 5.4.312)': [
    { provider: 'Exchange Online', reply: '451 4.4.312 DNS query failed', category: 'routing-errors', severity: 'temporary' },
  ],
  'bad domain (RFC 3463 X.1.2, Exim, Sendmail, Postfix)': [
    { provider: 'Exim', reply: 'all relevant MX records point to non-existent hosts', category: 'bad-domain' },
    { provider: 'Sendmail', reply: { enhancedCode: '5.0.0', text: '550 Host unknown (Name server: example.test: host not found)' }, category: 'bad-domain' },
    { provider: 'generic', reply: '550 5.0.0 unknown mail domain', category: 'bad-domain' },
    { provider: 'generic', reply: '550 recipient domain does not exist', category: 'bad-domain' },
  ],
  'unknown recipient (RFC 3463 X.1.1, Sendmail, qmail, Exchange, Gmail, Postfix)': [
    { provider: 'Sendmail', reply: { enhancedCode: '5.0.0', text: '550 <x@example.test>... User unknown' }, category: 'bad-mailbox' },
    { provider: 'qmail', reply: 'Sorry, no mailbox here by that name. (#5.1.1)', category: 'bad-mailbox' },
    { provider: 'Exchange', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', category: 'bad-mailbox' },
    { provider: 'RFC 5321', reply: '553 Requested action not taken: mailbox name not allowed', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 5.7.1 recipient is not valid', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 Address unknown', category: 'bad-mailbox' },
  ],
  'connection and rate limits (Postfix anvil, Exchange Online)': [
    { provider: 'Postfix', reply: '421 4.7.0 Too many concurrent SMTP connections from this client; try again later', category: 'bad-connection' },
    { provider: 'generic', reply: '550 5.0.0 session limit exceeded', category: 'bad-connection' },
    { provider: 'generic', reply: '450 4.7.1 sending too fast, slow down', category: 'quota-issues' },
  ],
  // Sisimai's reason modules (lib/Sisimai/Reason/*.pm): their evidence phrases, as our own families.
  'unknown recipient (Sisimai UserUnknown.pm)': [
    { provider: 'LDAP MTA', reply: '550 5.1.1 <someone@example.org>: address not present in directory', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 no someone in name directory', category: 'bad-mailbox' },
    { provider: 'generic', reply: "550 Sorry, can't accept user someone@example.org", category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 5.1.1 destination addresses were unknown', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 5.1.1 The destination server rejected recipients', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 someone@example.org is not an active address at this host', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 5.0.0 mailbox invalid', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 mailbox not present', category: 'bad-mailbox' },
    { provider: 'Italian ISP', reply: '550 nessun utente simile in questo indirizzo', category: 'bad-mailbox' },
    { provider: 'Spanish ISP', reply: '550 no existe dicha persona', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 no mail box available for this user', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 No thank you rejected: account unavailable', category: 'bad-mailbox' },
    { provider: 'generic', reply: '554 no valid recipients, bye', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 someone@example.org is not a local address', category: 'bad-mailbox' },
    { provider: 'Postfix access', reply: '550 5.1.1 <someone@example.org>: Recipient address rejected: userunknown', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 recipient not OK', category: 'bad-mailbox' },
    { provider: 'Exchange', reply: '550 5.1.1 RESOLVER.ADR.Recip NotFound; not found', category: 'bad-mailbox' },
    { provider: 'qmail', reply: '553 sorry, your envelope recipient has been denied (#5.7.1)', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 There is no one at this address', category: 'bad-mailbox' },
    { provider: 'qmail', reply: '553 sorry, this recipient is not in my validrcptto list (#5.7.1)', category: 'bad-mailbox' },
    { provider: 'Sendmail', reply: '550 5.1.1 someone... user missing home directory', category: 'bad-mailbox' },
    { provider: 'French ISP', reply: '550 Utilisateur inconnu !', category: 'bad-mailbox' },
    { provider: 'vpopmail', reply: 'vdeliver: Invalid or unknown virtual user someone@example.org', category: 'bad-mailbox' },
    { provider: 'generic', reply: '550 <someone@example.org> not found', category: 'bad-mailbox' },
  ],
  'bad domain (Sisimai HostUnknown.pm)': [
    { provider: 'generic', reply: '550 5.1.2 Recipient domain must exist', category: 'bad-domain' },
    { provider: 'generic', reply: '550 mail domain mentioned in email address is unknown', category: 'bad-domain' },
  ],
  'mailbox full (Sisimai MailboxFull.pm)': [
    { provider: 'generic', reply: '552 5.2.2 Account is exceeding their quota', category: 'quota-issues' },
    { provider: 'generic', reply: '552 someone@example.org does not have enough space', category: 'quota-issues' },
    { provider: 'vpopmail', reply: 'maildir delivery failed: userdisk quota 104857600 exceeded', category: 'quota-issues' },
    { provider: 'generic', reply: '552 message would be over the allowed quota', category: 'quota-issues' },
    { provider: 'generic', reply: '552 recipient reached disk quota', category: 'quota-issues' },
    { provider: 'generic', reply: '552 Recipient rejected: mailbox would exceed maximum allowed storage', category: 'quota-issues' },
    { provider: 'NetEase', reply: "550 The user's space has been used up", category: 'quota-issues' },
    { provider: 'generic', reply: '550 account disabled temporarly for exceeding receiving limits', category: 'quota-issues' },
    { provider: 'generic', reply: '550 5.0.0 write error: No space left on device', category: 'quota-issues' },
    { provider: 'generic', reply: '550 not sufficient disk space', category: 'quota-issues' },
  ],
  'message too big (Sisimai MesgTooBig.pm, EmailTooLarge.pm, ExceedLimit.pm)': [
    { provider: 'Postfix', reply: '552 5.3.4 Error: message file too big', category: 'content-related' },
    { provider: 'generic', reply: '552 message exceeds the size limit', category: 'content-related' },
    { provider: 'French ISP', reply: '552 taille limite du message atteinte', category: 'content-related' },
    { provider: 'generic', reply: '552 message header size exceeds limit', category: 'content-related' },
  ],
  'expiry and delay notices (Sisimai Expired.pm)': [
    { provider: 'Sendmail', reply: 'Warning: message still undelivered; delivery attempts will continue to be made for 4 day(s)', category: 'message-expired' },
    { provider: 'Gmail (delay notice)', reply: 'Message will be retried for 2 more day(s)', category: 'message-expired' },
    { provider: 'generic', reply: 'Your message has been delayed', category: 'message-expired' },
    { provider: 'generic', reply: 'Giving up on 192.0.2.1', category: 'message-expired' },
    { provider: 'POP gateway', reply: 'The message has not been collected after 14 days', category: 'message-expired' },
    { provider: 'generic', reply: 'Message timed out', category: 'message-expired' },
    { provider: 'generic', reply: 'example.org was not reachable within the allowed queue period', category: 'message-expired' },
  ],
  'network and routing (Sisimai NetworkError.pm, NotAccept.pm)': [
    { provider: 'Postfix', reply: 'Malformed name server reply', category: 'routing-errors' },
    { provider: 'Exchange', reply: 'DNS records for the destination computer could not be found', category: 'routing-errors' },
    { provider: 'generic', reply: 'unable to resolve route example.org', category: 'routing-errors' },
    { provider: 'Sendmail', reply: '554 5.4.6 mail forwarding loop for someone@example.org', category: 'routing-errors' },
    { provider: 'generic', reply: '554 message looping', category: 'routing-errors' },
    { provider: 'generic', reply: '550 no route for current request', category: 'routing-errors' },
  ],
  'inactive mailbox (Sisimai Suspend.pm, HasMoved.pm)': [
    { provider: 'generic', reply: '550 someone@example.org is currently suspended', category: 'inactive-mailbox' },
    { provider: 'generic', reply: '550 mailbox temporary locked', category: 'inactive-mailbox' },
    { provider: 'Postfix access', reply: '550 5.2.1 <someone@example.org>: Recipient rejected: Temporarily inactive', category: 'inactive-mailbox' },
    { provider: 'generic', reply: '550 recipient suspend the service', category: 'inactive-mailbox' },
    { provider: 'generic', reply: '550 5.1.6 address someone@example.org has been replaced by other@example.org', category: 'inactive-mailbox' },
  ],
  'relaying (Sisimai NoRelaying.pm)': [
    { provider: 'generic', reply: '550 insecure mail relay', category: 'relaying-issues' },
    { provider: 'MailEnable', reply: '550 This mail server requires authentication when attempting to send to a non-local e-mail address', category: 'relaying-issues' },
    { provider: 'generic', reply: '550 not a gateway', category: 'relaying-issues' },
    { provider: 'generic', reply: '550 we are not an open relay, so get lost', category: 'relaying-issues' },
    { provider: 'generic', reply: '550 not local host example.org, not a gateway', category: 'relaying-issues' },
    { provider: 'generic', reply: '550 relaying mail to example.org is not allowed', category: 'relaying-issues' },
    { provider: 'qmail', reply: "553 sorry, that domain isn't in my list of allowed rcpthost", category: 'relaying-issues' },
    { provider: 'generic', reply: "550 we don't handle mail for example.org", category: 'relaying-issues' },
  ],
  'sender refused (Sisimai Rejected.pm)': [
    { provider: 'SonicWall', reply: '550 BATV failed to verify', category: 'invalid-sender' },
    { provider: 'MDaemon', reply: '550 Backscatter protection detected an invalid or expired email address', category: 'invalid-sender' },
    { provider: 'IMail', reply: '550 bogus mail from', category: 'invalid-sender' },
    { provider: 'French ISP', reply: '550 Emetteur invalide', category: 'invalid-sender' },
    { provider: 'generic', reply: '550 From: domain is invalid. Please provide a valid From:', category: 'invalid-sender' },
    { provider: 'McAfee', reply: '550 fully qualified email address required', category: 'invalid-sender' },
    { provider: 'generic', reply: '553 mail from not owned by user', category: 'invalid-sender' },
    { provider: 'generic', reply: '554 Transaction failed unsigned DSN for someone@example.org', category: 'invalid-sender' },
    { provider: 'generic', reply: '550 sender address has been blacklisted', category: 'policy-related' },
    { provider: 'generic', reply: '550 sender is in my black list', category: 'policy-related' },
    { provider: 'MessageLabs', reply: '553 Your email address has been blacklisted', category: 'policy-related' },
    { provider: 'AOL', reply: "550 because the sender isn't on the recipient's list of senders to accept mail from", category: 'policy-related' },
    { provider: 'generic', reply: '550 sender not pre-approved', category: 'policy-related' },
    { provider: 'Exchange', reply: '550 5.7.1 Email address is on SenderFilterConfig list', category: 'policy-related' },
  ],
  'sender authentication (Sisimai Rejected.pm, AuthFailure.pm, RequirePTR.pm, Blocked.pm, SecurityError.pm)': [
    { provider: 'Exchange', reply: "550 5.7.1 Can't determine Purported Responsible Address", category: 'policy-related' },
    { provider: 'generic', reply: '550 5.7.1 verification failure', category: 'policy-related' },
    { provider: 'generic', reply: '550 5.7.1 See http://spf.pobox.com/why.html', category: 'policy-related' },
    { provider: 'generic', reply: '550 5.7.1 please inspect your SPF settings', category: 'policy-related' },
    { provider: 'generic', reply: '550 5.7.1 Bad DNS PTR resource record', category: 'policy-related' },
    { provider: 'generic', reply: '550 5.7.1 unresolvable relay host name', category: 'policy-related' },
    { provider: 'generic', reply: '550 5.7.1 192.0.2.1 is not allowed to send mail from example.org', category: 'policy-related' },
  ],
  'blocks and spam (Sisimai Blocked.pm, SpamDetected.pm)': [
    { provider: 'generic', reply: '550 bad sender IP address', category: 'spam-related' },
    { provider: 'generic', reply: '554 extreme bad ip profile', category: 'spam-related' },
    { provider: 'generic', reply: '554 server IP 192.0.2.1 listed as abusive', category: 'spam-related' },
    { provider: 'generic', reply: '554 5.7.1 sender domain listed at dbl.example.org', category: 'spam-related' },
    { provider: 'Microsoft', reply: '550 5.7.1 Service unavailable; not currently accepting mail from your ip', category: 'spam-related' },
    { provider: 'Mail.ru', reply: '550 please use the smtp server of your ISP', category: 'policy-related' },
    { provider: 'generic', reply: '554 go away', category: 'policy-related' },
    { provider: 'generic', reply: '550 no access from mail server', category: 'policy-related' },
    { provider: 'generic', reply: '550 sorry, your remotehost looks suspiciously like spammer', category: 'spam-related' },
    { provider: 'generic', reply: '550 too many unwanted messages have been sent from the following IP address above', category: 'spam-related' },
    { provider: 'MailMarshal', reply: '550 Message refused by MailMarshal SpamProfiler', category: 'spam-related' },
    { provider: 'generic', reply: '550 reject bulk.advertising', category: 'spam-related' },
    { provider: 'generic', reply: "550 you're using a mass mailer", category: 'spam-related' },
    { provider: 'generic', reply: '550 your message failed several antispam checks', category: 'spam-related' },
  ],
  'policy, content, virus, configuration (Sisimai PolicyViolation.pm, ContentError.pm, VirusDetected.pm, SecurityError.pm)': [
    { provider: 'AOL', reply: '554 because the recipient is not accepting mail with attachments', category: 'policy-related' },
    { provider: 'generic', reply: '550 message bounced due to organizational settings', category: 'policy-related' },
    { provider: 'Exchange', reply: '554 5.6.0 header size exceeds maximum permitted', category: 'content-related' },
    { provider: 'Sendmail', reply: '550 5.6.9 improper use of 8-bit data in message header', category: 'content-related' },
    { provider: 'generic', reply: '554 message MIME complexity exceeds the policy maximum', category: 'content-related' },
    { provider: 'generic', reply: '550 this message contain improperly-formatted binary content', category: 'content-related' },
    { provider: 'generic', reply: '550 this message contain text that uses unnecessary base64 encoding', category: 'content-related' },
    { provider: 'Gmail', reply: '552 5.7.0 This message was blocked because it has a potentially executable attachment', category: 'virus-related' },
    { provider: 'generic', reply: '535 5.7.8 authentication credentials invalid', category: 'bad-configuration' },
    { provider: 'generic', reply: '550 authentication turned on in your email client', category: 'bad-configuration' },
  ],
  'mailing list refusing a non-member (fml, Google Groups, Sisimai PolicyViolation.pm, Rejected.pm)': [
    { provider: 'fml', reply: 'You are not a member of this mailing list <list@example.org>.', category: 'policy-related' },
    { provider: 'Mailman', reply: 'Post by non-member to a members-only list', category: 'policy-related' },
    { provider: 'generic', reply: '550 closed mailing list', category: 'policy-related' },
    { provider: 'Google Groups', reply: 'The email address used to send your message is not subscribed to this group.', category: 'policy-related' },
    { provider: 'generic', reply: '550 You are not allowed to post to this mailing list', category: 'policy-related' },
    { provider: 'Google Groups', reply: 'You have exceeded the allowable number of posts without solving a captcha.', category: 'policy-related' },
  ],
  // Providers' published reply lists, read into the generic families.
  'provider reply lists (Mimecast, Gmail, Exchange Online, Yahoo, Coremail, Baruwa, Mail.ru)': [
    { provider: 'Mimecast', reply: '550 spf sender invalid - envelope rejected', category: 'policy-related' },
    { provider: 'Mimecast', reply: '451 Open relay not allowed', category: 'relaying-issues', severity: 'temporary' },
    { provider: 'Mimecast', reply: '550 Submitter failed to authenticate', category: 'bad-configuration' },
    { provider: 'Mimecast', reply: '553 This route requires high-strength ciphers', category: 'bad-configuration' },
    { provider: 'Mimecast', reply: '553 This route requires TLS version 1.2 or greater', category: 'bad-configuration' },
    { provider: 'Gmail', reply: '550 5.7.1 Invalid credentials for relay [192.0.2.1].', category: 'relaying-issues' },
    { provider: 'Gmail', reply: '550 5.7.1 Messages missing a valid address in the From: header, or having no From: header, are not accepted.', category: 'content-related' },
    { provider: 'Exchange Online', reply: '451 4.7.500 Access denied, please try again later', category: 'policy-related', severity: 'temporary' },
    { provider: 'Yahoo', reply: '554 delivery error: dd someone@yahoo.com is no longer valid. [-20]', category: 'inactive-mailbox' },
    { provider: 'Baruwa', reply: '550 Dictionary attack detected', category: 'spam-related' },
    { provider: 'Baruwa', reply: '550 Restricted characters in address', category: 'bad-mailbox' },
    { provider: 'Baruwa', reply: '550 Recipient verification failed', category: 'bad-mailbox' },
    { provider: 'Mail.ru', reply: '550 Message sending for this account is disabled', category: 'invalid-sender' },
    { provider: 'Coremail', reply: '550 Requested mail action not taken: Invalid IP', category: 'policy-related' },
    { provider: 'Coremail', reply: '550 Requested mail action not taken: Fake sender', category: 'invalid-sender' },
    { provider: 'Coremail', reply: '553 host denies the sender', category: 'invalid-sender' },
    { provider: 'Coremail', reply: '554 sender is unvalidated', category: 'invalid-sender' },
    { provider: 'Coremail', reply: '550 Requested action not taken: Local user only', category: 'relaying-issues' },
    { provider: 'Coremail', reply: '553 host denies relay', category: 'relaying-issues' },
    { provider: 'Coremail', reply: '550 black ip', category: 'spam-related' },
    { provider: 'Coremail', reply: '554 rbl deny', category: 'spam-related' },
    { provider: 'Coremail', reply: '554 Black mail address', category: 'policy-related' },
    { provider: 'Coremail', reply: '554 attachment is too long', category: 'content-related' },
    { provider: 'Coremail', reply: '550 exceeded mailsize limit', category: 'content-related' },
    { provider: 'Coremail', reply: '550 Content reject', category: 'content-related' },
    { provider: 'Coremail', reply: '451 DNS query error', category: 'routing-errors', severity: 'temporary' },
    { provider: 'Coremail', reply: '555 helohost error', category: 'policy-related' },
    { provider: 'Barracuda', reply: '420 The message has been deferred due to suspect content', category: 'spam-related', severity: 'temporary' },
  ],
  'virus (ClamAV, amavisd-new, Exchange)': [
    { provider: 'amavisd-new', reply: '554 5.7.0 Reject, id=12345 - INFECTED: Eicar-Test-Signature', category: 'virus-related' },
    { provider: 'generic', reply: '550 5.0.0 Message contains a virus', category: 'virus-related' },
  ],
};

/** The SMTP stage (RFC 5321 §3.3): the same words mean different things at RCPT TO and after DATA. */
const STAGE_ROWS: Row[] = [
  { provider: 'stage data', reply: { code: 550, text: 'Unknown user', stage: 'data' }, category: 'policy-related', severity: 'permanent' },
  { provider: 'stage data', reply: { enhancedCode: '5.0.0', text: '550 user unknown', stage: 'data' }, category: 'policy-related' },
  { provider: 'stage data', reply: { code: 550, text: 'Requested action not taken: mailbox unavailable', stage: 'data' }, category: 'policy-related' },
  { provider: 'stage data, X.1.1', reply: { code: 550, enhancedCode: '5.1.1', text: 'User unknown', stage: 'data' }, category: 'bad-mailbox' },
  { provider: 'stage data, stated reason', reply: { code: 552, enhancedCode: '5.2.2', text: 'Mailbox full', stage: 'data' }, category: 'quota-issues' },
  { provider: 'stage rcpt', reply: { code: 550, text: 'Unknown user', stage: 'rcpt' }, category: 'bad-mailbox' },
  { provider: 'stage unknown', reply: { code: 550, text: 'Unknown user' }, category: 'bad-mailbox' },
  { provider: 'stage mail', reply: { code: 550, enhancedCode: '5.1.8', text: 'Domain not found', stage: 'mail' }, category: 'invalid-sender' },
  { provider: 'stage mail', reply: { code: 550, text: 'Please use the SMTP server of your ISP', stage: 'mail' }, category: 'policy-related' },
  { provider: 'stage connection', reply: { code: 554, text: 'mx.example.test', stage: 'connection' }, category: 'policy-related' },
  // A stated reason wins over the stage catch-alls (Postfix's postscreen and smtpd limits, RFC 1870 SIZE at MAIL FROM).
  { provider: 'stage mail, stated rate', reply: { code: 452, enhancedCode: '4.3.2', text: 'Connection rate limit exceeded.', stage: 'mail' }, category: 'bad-connection' },
  { provider: 'stage mail, stated size', reply: { code: 552, enhancedCode: '5.2.3', text: 'Message size exceeds fixed maximum message size (10485760)', stage: 'mail' }, category: 'content-related' },
  // Yahoo's published SMTP error codes: the answer for a mailbox that does not exist, sent after DATA.
  { provider: 'stage data, Yahoo no account', reply: { code: 554, text: "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0]", stage: 'data' }, category: 'bad-mailbox' },
  { provider: 'Postfix wording', reply: 'host mx.example.test[192.0.2.1] said: 550 Unknown user (in reply to end of DATA command)', category: 'policy-related' },
  { provider: 'Postfix wording', reply: 'host mx.example.test[192.0.2.1] said: 550 Unknown user (in reply to RCPT TO command)', category: 'bad-mailbox' },
  { provider: 'Exim wording', reply: 'SMTP error from remote mail server after end of data: 550 No such user here', category: 'policy-related' },
];

/** Issue 10 §2: with a vague code (x.0.0, x.7.1, 5.2.0, none) the words decide. */
const VAGUE_CODE_ROWS: Row[] = [
  { provider: 'vague 5.0.0', reply: { enhancedCode: '5.0.0', text: 'mailbox full' }, category: 'quota-issues' },
  { provider: 'vague 5.7.1', reply: '550 5.7.1 account disabled', category: 'inactive-mailbox' },
  { provider: 'vague 5.7.1', reply: '554 5.7.1 virus found in message', category: 'virus-related' },
  { provider: 'vague 4.0.0', reply: { enhancedCode: '4.0.0', text: 'too many concurrent sessions' }, category: 'bad-connection' },
  { provider: 'vague 5.7.1', reply: '550 5.7.1 sender rejected', category: 'invalid-sender' },
  { provider: 'vague 5.2.0', reply: '550 5.2.0 host not found', category: 'bad-domain' },
  { provider: 'vague 5.0.0', reply: { enhancedCode: '5.0.0', text: 'no such user' }, category: 'bad-mailbox' },
  { provider: 'no code', reply: 'retry timeout exceeded', category: 'message-expired' },
  { provider: 'vague 5.7.1 alone', reply: '550 5.7.1', category: 'policy-related' },
];

const EXTRA_ROWS: Row[] = [...Object.values(FAMILIES).flat(), ...STAGE_ROWS, ...VAGUE_CODE_ROWS];

describe('phrase families, stage and vague codes', () => {
  const check = (row: Row): void => {
    const result = classifyReply(row.reply);
    expect(result.category).toBe(row.category);
    if (row.severity !== undefined) expect(result.severity).toBe(row.severity);
  };
  for (const [family, rows] of Object.entries(FAMILIES)) {
    it.each(rows.map((row) => [`${row.provider}: ${shown(row.reply).slice(0, 80)}`, row] as const))(`${family}: %s`, (_name, row) => check(row));
  }
  it.each(STAGE_ROWS.map((row) => [`${row.provider}: ${shown(row.reply).slice(0, 80)}`, row] as const))('stage: %s', (_name, row) => check(row));
  it.each(VAGUE_CODE_ROWS.map((row) => [`${row.provider}: ${shown(row.reply).slice(0, 80)}`, row] as const))('vague code: %s', (_name, row) => check(row));

  it('reads the stage an MTA names in the text, and lets the caller\'s stage win', () => {
    expect(stageInText('550 x (in reply to end of DATA command)')).toBe('data');
    expect(stageInText('550 x (in reply to RCPT TO command)')).toBe('rcpt');
    expect(stageInText('SMTP error from remote mail server after MAIL FROM:<a@b> SIZE=1: 550 no')).toBe('mail');
    expect(stageInText('SMTP error from remote mail server after initial connection: 554 go away')).toBe('connection');
    expect(stageInText('550 user unknown')).toBeNull();
    expect(classifyReply({ text: '550 Unknown user (in reply to end of DATA command)', stage: 'rcpt' }).category).toBe('bad-mailbox');
  });

  it('every rule in the shipped file names its source; mta tags are corpus family names', () => {
    const rules = defaultBounceRules().rules;
    expect(rules.filter((rule) => rule.source === null).map((rule) => rule.id)).toEqual([]);
    expect(rules.filter((rule) => rule.mta !== null).length).toBeGreaterThanOrEqual(15);
  });

  it('withoutMta leaves out the rules written from one MTA\'s wording (holdout by family)', () => {
    const all = loadBounceRules();
    const withoutOpenSmtpd = loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { withoutMta: 'opensmtpd' });
    expect(all.rules.length - withoutOpenSmtpd.rules.length).toBe(all.rules.filter((rule) => rule.mta === 'opensmtpd').length);
    expect(classifyReply('Envelope expired', all).rule).toBe('expiry-opensmtpd');
    expect(classifyReply('Envelope expired', withoutOpenSmtpd).rule).not.toBe('expiry-opensmtpd');
  });

  it('a stage condition never matches a reply of unknown stage, and an unknown stage name is refused', () => {
    const rules = compileBounceRules({ defaults: { permanent: 'other', temporary: 'other' }, rules: [{ id: 'at-data', stage: 'data', category: 'content-related', why: 'test' }] });
    expect(classifyReply({ code: 550, text: 'x', stage: 'data' }, rules).category).toBe('content-related');
    expect(classifyReply({ code: 550, text: 'x' }, rules).category).toBe('other');
    expect(() => compileBounceRules({ defaults: { permanent: 'other', temporary: 'other' }, rules: [{ id: 'bad', stage: 'DATA', category: 'other', why: 'test' }] })).toThrow(
      /rules\[0\] \("bad"\): stage: /,
    );
  });
});

describe('classifyReply on real-world replies', () => {
  it('has a table worth trusting', () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(150);
    expect(new Set(ROWS.map((row) => row.provider)).size).toBeGreaterThanOrEqual(30);
  });

  it.each(ROWS.map((row) => [`${row.provider}: ${shown(row.reply).replace(/\s+/g, ' ').slice(0, 90)}`, row] as const))(
    '%s',
    (_name, row) => {
      const result = classifyReply(row.reply);
      expect(result.category).toBe(row.category);
      expect(result.type).toBe(typeOfCategory(row.category));
      if (row.severity !== undefined) expect(result.severity).toBe(row.severity);
      expect(result.retryInNewTransaction === true).toBe(row.retryInNewTransaction === true);
    },
  );

  it('covers every category somewhere in the table', () => {
    const seen = new Set(ROWS.map((row) => row.category));
    expect(CATEGORIES.filter((category) => !seen.has(category))).toEqual([]);
  });
});

describe('edge cases real MTAs disagree on', () => {
  it('a recipient-limit refusal is temporary whatever its code, and asks for a new transaction', () => {
    for (const reply of ['452 4.5.3 Too many recipients', '552 Too many recipients', '552 5.5.3 Too many recipients', '550 5.5.3 Recipient limit exceeded']) {
      const result = classifyReply(reply);
      expect(result, reply).toMatchObject({ severity: 'temporary', category: 'protocol-errors', type: 'soft', retryInNewTransaction: true });
    }
  });

  it('a recipient rate over time is not a per-transaction limit', () => {
    const result = classifyReply('452 Too many recipients received this hour');
    expect(result.retryInNewTransaction).toBeUndefined();
    expect(result.category).toBe('quota-issues');
  });

  it('552 5.2.2 is a permanent reply in a soft category: not retried, not suppressed', () => {
    expect(classifyReply('552 5.2.2 Mailbox full')).toMatchObject({ severity: 'permanent', category: 'quota-issues', type: 'soft' });
  });

  it('a 421 with a hard category stays temporary (retried, never suppressed)', () => {
    expect(classifyReply('421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to user complaints')).toMatchObject({
      severity: 'temporary',
      category: 'spam-related',
      type: 'hard',
    });
  });

  it('Outlook 5.4.1 is an unknown recipient only with the DBEB text; otherwise X.4.1 means no answer', () => {
    expect(classifyReply('550 5.4.1 Recipient address rejected: Access denied').category).toBe('bad-mailbox');
    expect(classifyReply('451 4.4.1 No answer from host').category).toBe('no-answer-from-host');
  });

  it('a stated reason beats a generic enhanced code, and the code decides when the text says nothing', () => {
    expect(classifyReply('550 5.7.1 No such user!').category).toBe('bad-mailbox');
    expect(classifyReply('550 5.5.0 Requested action not taken: mailbox unavailable').category).toBe('bad-mailbox');
    expect(classifyReply('550 5.7.1 Delivery not authorized, message refused').category).toBe('policy-related');
    expect(classifyReply('550 5.2.1 Sorry').category).toBe('inactive-mailbox');
  });

  it('falls back to the default category when nothing matches', () => {
    expect(classifyReply('554 Transaction failed')).toMatchObject({ category: 'other', severity: 'permanent', rule: 'default' });
    expect(classifyReply('something odd happened')).toMatchObject({ category: 'other', severity: 'temporary' });
  });
});

describe('parsing the reply', () => {
  it('takes the code and enhanced code from a one-line reply', () => {
    expect(classifyReply('550 5.1.1 <x@y>: Recipient address rejected: User unknown')).toMatchObject({
      code: 550,
      enhancedCode: '5.1.1',
      text: '<x@y>: Recipient address rejected: User unknown',
    });
  });

  it('joins a multi-line reply, stripping the codes every line repeats', () => {
    expect(classifyReply('550-5.7.26 line one\n550 5.7.26 line two')).toMatchObject({
      code: 550,
      enhancedCode: '5.7.26',
      text: 'line one line two',
    });
    expect(classifyReply('421-4.7.0 first\r\n421-4.7.0  second\r\n421 4.7.0 third')).toMatchObject({ text: 'first second third' });
  });

  it('joins a multi-line reply without enhanced codes', () => {
    expect(classifyReply('554-No SMTP service\n554-IP address is black listed.\n554 For explanation visit x')).toMatchObject({
      code: 554,
      enhancedCode: null,
      text: 'No SMTP service IP address is black listed. For explanation visit x',
    });
  });

  it('cleans a multi-line reply that a log flattened onto one line', () => {
    const result = classifyReply('550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the address. 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser - gsmtp');
    expect(result.text).toBe('The email account that you tried to reach does not exist. Please try double-checking the address. https://support.google.com/mail/?p=NoSuchUser - gsmtp');
  });

  it('reads the codes of a reply with a code only, a Cisco "#" code and a qmail trailing code', () => {
    expect(classifyReply('550 No such user here')).toMatchObject({ code: 550, enhancedCode: null, text: 'No such user here' });
    expect(classifyReply('550 #5.1.0 Address rejected.')).toMatchObject({ code: 550, enhancedCode: '5.1.0', text: 'Address rejected.' });
    expect(classifyReply('553 sorry, that domain isn\'t in my list of allowed rcpthosts (#5.7.1)')).toMatchObject({ code: 553, enhancedCode: '5.7.1' });
  });

  it('does not take an IP address or a version number for an enhanced code', () => {
    expect(classifyReply('421 4.7.0 [TSS04] deferred - 4.16.55.1; see https://postmaster.yahooinc.com').enhancedCode).toBe('4.7.0');
    expect(classifyReply('Connection to 10.5.1.1 timed out').enhancedCode).toBeNull();
    expect(classifyReply('deferred - 4.16.55.1').enhancedCode).toBeNull();
  });

  it('strips a DSN diagnostic type', () => {
    expect(classifyReply('smtp; 550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown')).toMatchObject({
      code: 550,
      enhancedCode: '5.1.1',
      text: '<someone@example.com>: Recipient address rejected: User unknown',
    });
    expect(classifyReply('X-Postfix; Host or domain name not found').text).toBe('Host or domain name not found');
  });

  it('finds codes quoted inside an NDR text', () => {
    expect(classifyReply("Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'")).toMatchObject({
      code: 550,
      enhancedCode: '5.1.1',
      category: 'bad-mailbox',
    });
  });
});

describe('explicit input', () => {
  it('uses a code and enhanced code given by the caller over the text', () => {
    const result = classifyReply({ code: 550, enhancedCode: '5.1.1', text: 'Recipient address rejected: User unknown' });
    expect(result).toMatchObject({ code: 550, enhancedCode: '5.1.1', category: 'bad-mailbox', severity: 'permanent' });
  });

  it('lets a given code win over the one in the text, and strips the text\'s codes', () => {
    const result = classifyReply({ code: 452, text: '552 5.2.2 Mailbox full' });
    expect(result).toMatchObject({ code: 452, enhancedCode: '5.2.2', severity: 'temporary', text: 'Mailbox full' });
  });

  it('works from a DSN: enhanced code from Status, the reply inside Diagnostic-Code', () => {
    const result = classifyReply({ enhancedCode: '5.1.1', text: 'smtp; 550 5.1.1 <someone@example.com>... User unknown' });
    expect(result).toMatchObject({ code: 550, enhancedCode: '5.1.1', category: 'bad-mailbox', severity: 'permanent', text: '<someone@example.com>... User unknown' });
  });

  it('works from an enhanced code and a text without a reply code', () => {
    expect(classifyReply({ enhancedCode: '4.4.7', text: 'delivery time expired' })).toMatchObject({
      code: null,
      severity: 'temporary',
      category: 'message-expired',
    });
    expect(classifyReply({ enhancedCode: '5.2.2', text: '' })).toMatchObject({ severity: 'permanent', category: 'quota-issues' });
    expect(classifyReply({ code: null, enhancedCode: '#5.7.1 (delivery not authorized)', text: 'refused' })).toMatchObject({
      enhancedCode: '5.7.1',
      category: 'policy-related',
    });
  });

  it('works from a text alone: severity from the rule, else temporary', () => {
    expect(classifyReply({ text: 'User unknown' })).toMatchObject({ code: null, enhancedCode: null, category: 'bad-mailbox', severity: 'permanent' });
    expect(classifyReply({ text: 'Mailbox full' })).toMatchObject({ category: 'quota-issues', severity: 'temporary' });
    expect(classifyReply({ text: 'Greylisted, please try again later' })).toMatchObject({ category: 'other', severity: 'temporary' });
    expect(classifyReply('Sorry, no mailbox here by that name.')).toMatchObject({ category: 'bad-mailbox', severity: 'permanent' });
  });

  it('ignores codes that are not SMTP codes', () => {
    expect(classifyReply({ code: 42, enhancedCode: 'nonsense', text: '550 5.1.1 User unknown' })).toMatchObject({ code: 550, enhancedCode: '5.1.1' });
  });

  it('names the deciding rule', () => {
    expect(classifyReply('550 5.1.1').rule).toBe('code-address-other');
  });
});

describe('categories', () => {
  it('has 17 categories split 8 hard / 9 soft', () => {
    expect(CATEGORIES).toHaveLength(17);
    expect(HARD_CATEGORIES).toHaveLength(8);
    expect(SOFT_CATEGORIES).toHaveLength(9);
    expect(HARD_CATEGORIES.every((category) => typeOfCategory(category) === 'hard')).toBe(true);
    expect(SOFT_CATEGORIES.every((category) => typeOfCategory(category) === 'soft')).toBe(true);
  });
});

describe('the rules file', () => {
  it('names only known categories and loads without error', () => {
    const raw = JSON.parse(readFileSync(DEFAULT_BOUNCE_RULES_PATH, 'utf8')) as { rules: Array<{ category: string }>; defaults: Record<string, string> };
    const known = new Set<string>(CATEGORIES);
    expect(raw.rules.map((rule) => rule.category).filter((category) => !known.has(category))).toEqual([]);
    expect(Object.values(raw.defaults).filter((category) => !known.has(category))).toEqual([]);
    expect(loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: null }).rules).toHaveLength(raw.rules.length);
  });

  it('is loaded once and kept', () => {
    expect(defaultBounceRules()).toBe(defaultBounceRules());
  });

  it('every text rule decides at least one row of the table', () => {
    const reached = new Set([...ROWS, ...EXTRA_ROWS].map((row) => classifyReply(row.reply).rule));
    // The provider rules (config/remote-host-rules.json) have their own table: test/remote-host-rules.test.ts.
    const unreached = defaultBounceRules()
      .rules.filter((rule) => rule.remoteHosts === null && (rule.pattern !== null || rule.rawPattern !== null))
      .map((rule) => rule.id)
      .filter((id) => !reached.has(id));
    expect(unreached).toEqual([]);
  });

  it('no code-only rule is hidden behind an earlier rule', () => {
    for (const rule of defaultBounceRules().rules.filter((candidate) => candidate.remoteHosts === null && candidate.pattern === null && candidate.rawPattern === null)) {
      const code = rule.codes === null ? null : [...rule.codes][0] ?? null;
      const [cls, subject, detail] = rule.enhancedCodes?.[0] ?? [null, null, null];
      const enhancedClass = cls ?? (code !== null && code < 500 ? 4 : 5);
      const enhancedCode = rule.enhancedCodes === null ? null : `${enhancedClass}.${subject ?? 99}.${detail ?? 99}`;
      const stage = rule.stages === null ? null : ([...rule.stages][0] ?? null);
      expect(classifyReply({ code, enhancedCode, text: 'x', stage }).rule, rule.id).toBe(rule.id);
    }
  });
});

describe('loadBounceRules errors', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  function writeRules(content: unknown): string {
    dir = mkdtempSync(join(tmpdir(), 'rebound-rules-'));
    const path = join(dir, 'bounce-rules.json');
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  const good = { id: 'good', pattern: 'user unknown', category: 'bad-mailbox', why: 'test' };
  const file = (...rules: unknown[]) => ({ defaults: { permanent: 'other', temporary: 'other' }, rules });

  it('names the rule index and id of a bad regex', () => {
    const path = writeRules(file(good, { id: 'broken', pattern: 'user (unknown', category: 'bad-mailbox', why: 'test' }));
    expect(() => loadBounceRules(path)).toThrow(BounceRulesError);
    expect(() => loadBounceRules(path)).toThrow(/rules\[1\] \("broken"\): pattern is not a valid regular expression/);
  });

  it('names the alternative of a pattern list that does not compile', () => {
    const path = writeRules(file({ id: 'list', pattern: ['user unknown', 'no such [user'], category: 'bad-mailbox', why: 'test' }));
    expect(() => loadBounceRules(path)).toThrow(/rules\[0\] \("list"\): pattern\[1\] is not a valid regular expression/);
  });

  it('names the rule index of an unknown category', () => {
    const path = writeRules(file(good, { ...good, id: 'other-id' }, { id: 'typo', code: 550, category: 'bad-mailboxes', why: 'test' }));
    expect(() => loadBounceRules(path)).toThrow(/rules\[2\] \("typo"\): category: unknown category "bad-mailboxes"/);
  });

  it('rejects a rule without conditions, unknown keys, bad enhanced codes and duplicate ids', () => {
    const path = writeRules(
      file(
        good,
        { id: 'no-condition', category: 'other', why: 'test' },
        { id: 'typo-key', patern: 'x', category: 'other', why: 'test' },
        { id: 'bad-code', enhancedCode: '5.1', category: 'other', why: 'test' },
        { ...good },
      ),
    );
    let message = '';
    try {
      loadBounceRules(path);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/rules\[1\] \("no-condition"\): needs at least one of code, enhancedCode, pattern/);
    expect(message).toMatch(/rules\[2\] \("typo-key"\): unknown key\(s\) "patern"/);
    expect(message).toMatch(/rules\[3\] \("bad-code"\): enhancedCode: /);
    expect(message).toMatch(/rules\[4\] \("good"\): id is already used by rules\[0\]/);
    expect(message).toContain(path);
  });

  it('reports a file that is not JSON or does not exist', () => {
    const path = writeRules('{ "rules": [');
    expect(() => loadBounceRules(path)).toThrow(/not valid JSON/);
    expect(() => loadBounceRules(join(dir ?? tmpdir(), 'missing.json'))).toThrow(/cannot read bounce rules/);
  });

  it('reports bad defaults', () => {
    expect(() => compileBounceRules({ defaults: { permanent: 'nope', temporary: 'other' }, rules: [good] })).toThrow(
      /defaults\.permanent: unknown category "nope"/,
    );
  });

  it('classifies with rules compiled in memory', () => {
    const rules = compileBounceRules(file({ id: 'only', enhancedCode: 'X.1.*', category: 'bad-domain', why: 'test' }));
    expect(classifyReply('550 5.1.1 user unknown', rules).category).toBe('bad-domain');
    expect(classifyReply('550 5.2.2 full', rules)).toMatchObject({ category: 'other', rule: 'default' });
  });
});

describe('report recipients: what the Action field adds (src/bounces/report/recipient.ts)', () => {
  const facts = (over: Partial<RecipientFacts>): RecipientFacts => ({
    recipient: 'someone@example.org',
    originalRecipient: null,
    action: 'failed',
    status: null,
    diagnosticCode: null,
    remoteMta: null,
    lastAttemptDate: null,
    willRetryUntil: null,
    replyCode: null,
    statusGiven: true,
    transient: false,
    impliedStatus: null,
    ...over,
  });

  it('a failed recipient after transient connection failures expired (Postfix after its queue lifetime)', () => {
    const result = classifyRecipient(
      facts({ status: '4.4.1', diagnosticCode: 'X-Postfix; connect to example.org[192.0.2.1]:25: Connection timed out' }),
    );
    expect(result).toMatchObject({ severity: 'temporary', category: 'message-expired', type: 'soft' });
  });

  it('a delay notice for a connection that failed is about the queue time (the message waits out its lifetime)', () => {
    const result = classifyRecipient(
      facts({ action: 'delayed', status: '4.4.1', diagnosticCode: 'X-Postfix; connect to example.org[192.0.2.1]:25: Connection timed out' }),
    );
    expect(result).toMatchObject({ severity: 'temporary', category: 'message-expired', type: 'soft' });
    expect(classifyRecipient(facts({ action: 'delayed', status: '4.4.2', diagnosticCode: 'smtp; 421 4.4.2 lost connection with mx.example.org' })).category).toBe('message-expired');
  });

  it('a delay notice that names a specific reason keeps it', () => {
    expect(classifyRecipient(facts({ action: 'delayed', status: '4.2.2', diagnosticCode: 'smtp; 452 4.2.2 Mailbox full' })).category).toBe('quota-issues');
    expect(classifyRecipient(facts({ action: 'delayed', status: '4.7.1', diagnosticCode: 'smtp; 451 4.7.1 blocked using zen.spamhaus.org' })).category).toBe('spam-related');
  });

  it('a delay notice with no diagnostic is about the queue time', () => {
    expect(classifyRecipient(facts({ action: 'delayed', status: '4.4.0' })).category).toBe('message-expired');
  });

  it('a permanent no-answer and other causes are kept', () => {
    expect(classifyRecipient(facts({ status: '5.4.1', diagnosticCode: 'smtp; 550 5.4.1 No answer from host' })).category).toBe('no-answer-from-host');
    expect(classifyRecipient(facts({ status: '4.2.2', diagnosticCode: 'smtp; 452 4.2.2 Mailbox full' })).category).toBe('quota-issues');
  });
});
