import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CATEGORIES, type Category } from '../src/bounces/categories.js';
import {
  BounceRulesError,
  classifyReply,
  compileBounceRules,
  DEFAULT_BOUNCE_RULES_PATH,
  DEFAULT_REMOTE_HOST_RULES_PATH,
  defaultBounceRules,
  loadBounceRules,
  remoteHostName,
  type ReplyInput,
} from '../src/bounces/classifier.js';

/**
 * Provider replies as the providers' published error pages word them (addresses and IPs replaced
 * by example values), each from one of that provider's hosts. `generic` is what the same reply
 * gets from a host that is not the provider's (or null when that is not the point of the row).
 */
interface Row {
  provider: string;
  host: string;
  reply: string | Omit<ReplyInput, 'remoteHost'>;
  category: Category;
  generic?: Category;
}

const ROWS: Row[] = [
  // GoDaddy: ca.godaddy.com/help/fix-rejected-email-with-a-bounce-error-40685
  { provider: 'GoDaddy', host: 'p3smtp.secureserver.net', reply: '554 Connection refused. This IP address is listed on the Spamhaus Block List (SBL). IB104', category: 'spam-related' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '552 This message has been rejected due to content judged to be spam by the internet community. IB212', category: 'spam-related' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '552 Virus infected message rejected. IB705', category: 'virus-related' },
  // The provider's code beats the enhanced code: an hourly limit of our IP (soft, other), not an
  // unknown user nor a recipient's quota.
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: { enhancedCode: '5.1.1', text: 'smtp; 550 This IP has sent too many to too many recipients this hour. IB607' }, category: 'other', generic: 'quota-issues' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: { enhancedCode: '5.1.1', text: 'smtp; 550 This IP has sent too many messages this hour. IB504' }, category: 'other', generic: 'quota-issues' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '421 Connection refused, too many sessions from This IP. Lower the number of concurrent sessions. IB007', category: 'bad-connection' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '421 Temporarily rejected. Reverse DNS for this IP failed. IB108', category: 'policy-related' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '550 example.com From: Domain is invalid. Provide a valid From: IB506', category: 'invalid-sender' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '550 jane@example.com Blank From: addresses are not allowed. Provide a valid From. IB501', category: 'content-related' },
  { provider: 'GoDaddy', host: 'smtp.secureserver.net', reply: '535 Authentication not allowed on IBSMTP Servers. IB401', category: 'bad-configuration' },
  { provider: 'GoDaddy', host: 'mailstore1.secureserver.net', reply: '554 RBL Reject.', category: 'spam-related' },
  { provider: 'GoDaddy', host: 'mailstore1.secureserver.net', reply: '550 Account disabled', category: 'inactive-mailbox' },
  { provider: 'GoDaddy', host: 'mailstore1.secureserver.net', reply: '552 Account storage limit', category: 'quota-issues' },

  // Cox: postmaster.cox.net Error Codes
  { provider: 'Cox', host: 'cxr.mx.a.cloudfilter.net', reply: '554 5.7.1 192.0.2.1 rejected - AUP#CXBL', category: 'spam-related' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '554 5.7.1 message rejected - AUP#URLBL011', category: 'spam-related' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '550 5.7.1 sender domain failed authentication - AUP#CXSNDR', category: 'policy-related' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '421 4.7.0 too many connections - AUP#CXCNCT', category: 'bad-connection' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '554 5.7.1 sending limited - AUP#CXTHRT', category: 'policy-related' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '554 5.7.1 192.0.2.1 too many invalid recipients', category: 'spam-related' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '554 5.7.1 192.0.2.1 rejected - no rDNS', category: 'policy-related' },
  { provider: 'Cox', host: 'mx.east.cox.net', reply: '421 4.7.0 message threshold exceeded', category: 'bad-connection' },

  // Orange / La Poste: postmaster OFR/LPN codes
  { provider: 'Orange', host: 'smtp-in.orange.fr', reply: '550 mwinf5c10 ME Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR006_103 192.0.2.1 [103]', category: 'spam-related' },
  { provider: 'Orange', host: 'smtp-in.orange.fr', reply: '550 5.7.1 Mail rejete. Mail rejected. OFR_506 [506]', category: 'spam-related' },
  { provider: 'Orange', host: 'smtp-in.orange.fr', reply: '421 mwinf5c79 ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR005_104 [104]', category: 'bad-connection' },
  { provider: 'La Poste', host: 'smtpz4.laposte.net', reply: '550 5.5.0 Authentification requise. Authentication Required. LPN105_402', category: 'bad-configuration' },
  { provider: 'La Poste', host: 'smtpz4.laposte.net', reply: '571 5.7.1 Message refused, DMARC verification Failed. LPN007_517', category: 'policy-related' },
  { provider: 'Orange', host: 'smtp-in.orange.fr', reply: '501 5.1.0 Emetteur invalide. Invalid Sender. OFR004_405 [405]', category: 'invalid-sender' },
  { provider: 'La Poste', host: 'smtpz4.laposte.net', reply: '550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. LPN416', category: 'bad-mailbox' },
  // Orange files "recipient over quota" under 5.1.1: the code decides.
  { provider: 'Orange', host: 'smtp-in.orange.fr', reply: '552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]', category: 'quota-issues' },
  { provider: 'La Poste', host: 'smtpz4.laposte.net', reply: '550 5.5.0 Boite du destinataire archivee. Archived recipient. LPN007_420', category: 'inactive-mailbox' },
  { provider: 'La Poste', host: 'smtpz4.laposte.net', reply: '421 4.2.1 Service refuse. Veuillez essayer plus tard. Service refused, please try later. LPN007_505', category: 'other' },
  { provider: 'Orange', host: 'smtp-in.wanadoo.fr', reply: '552 5.3.4 Taille limite du message atteinte. OFR_514 [514]', category: 'content-related' },
  { provider: 'Orange', host: 'smtp-in.orange.fr', reply: '421 smtp.orange.fr [192.0.2.1] Emetteur invalide, Veuillez verifier la configuration SPF/DNS de votre nom de domaine. Invalid Sender. SPF check failed', category: 'policy-related' },

  // Tencent QQ Mail: service.mail.qq.com/detail/122
  { provider: 'QQ', host: 'mx3.qq.com', reply: '550 DMARC check failed. http://service.mail.qq.com/detail/122/72', category: 'policy-related' },
  { provider: 'QQ', host: 'mx3.qq.com', reply: '550 Suspected spam ip, please try again later. http://service.mail.qq.com/detail/122/66', category: 'spam-related' },
  { provider: 'QQ', host: 'mx3.qq.com', reply: '550 Mail content denied. http://service.mail.qq.com/detail/122/171', category: 'spam-related' },
  { provider: 'QQ', host: 'mx3.qq.com', reply: '550 Mail is rejected by recipients. http://service.mail.qq.com/detail/122/92', category: 'policy-related' },
  { provider: 'QQ', host: 'mx3.qq.com', reply: '550 Ip frequency limited. http://service.mail.qq.com/detail/122/172', category: 'bad-connection' },
  { provider: 'QQ', host: 'mx1.qq.com', reply: '550 Mailbox unavailable or access denied. http://service.mail.qq.com/detail/122/166', category: 'other', generic: 'bad-mailbox' },
  { provider: 'QQ', host: 'mx1.qq.com', reply: '552 Message too large. http://service.mail.qq.com/detail/122/168', category: 'content-related' },
  { provider: 'QQ', host: 'mx1.qq.com', reply: '550 user@qq.com is a deactivated mailbox', category: 'inactive-mailbox' },
  { provider: 'QQ', host: 'mx1.qq.com', reply: '501 Bad address syntax. http://service.mail.qq.com/detail/122/167', category: 'protocol-errors', generic: 'bad-mailbox' },
  { provider: 'QQ', host: 'mx1.qq.com', reply: '550 Mailbox not found. http://service.mail.qq.com/detail/122/169', category: 'bad-mailbox' },

  // Yahoo: senders.yahooinc.com/smtp-error-codes
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints; see https://postmaster.yahooinc.com/error-codes', category: 'policy-related', generic: 'spam-related' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed.', category: 'policy-related' },
  { provider: 'Yahoo', host: 'mta7.am0.yahoodns.net', reply: '421 4.7.1 [TS03] All messages from 192.0.2.1 permanently deferred; Retrying will NOT succeed.', category: 'policy-related', generic: 'spam-related' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.', category: 'policy-related' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list", category: 'spam-related' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '554 Message not allowed - [PH01] Email not accepted for policy reasons.', category: 'policy-related' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '451 Message temporarily deferred due to unresolvable RFC.5321 from domain', category: 'invalid-sender' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '554 5.7.9 Message not accepted, headers are not RFC compliant', category: 'content-related' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '554 delivery error: dd user@yahoo.com is no longer valid.', category: 'inactive-mailbox' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: '421 Max message per connection reached, closing transmission channel', category: 'bad-connection' },
  { provider: 'Yahoo', host: 'mta5.am0.yahoodns.net', reply: "554 delivery error: dd This user doesn't have a yahoo.com account (user@yahoo.com) [0]", category: 'bad-mailbox' },

  // Apple iCloud Mail: support.apple.com/en-us/102322
  { provider: 'iCloud', host: 'mx01.mail.icloud.com', reply: '550 5.1.1 <user@icloud.com>: inactive email address', category: 'bad-mailbox' },
  { provider: 'iCloud', host: 'mx01.mail.icloud.com', reply: '550 5.1.6 recipient no longer on server: user@icloud.com', category: 'inactive-mailbox' },
  { provider: 'iCloud', host: 'mx01.mail.icloud.com', reply: "554 5.7.1 Your message was rejected due to example.com's DMARC policy.", category: 'policy-related' },
  { provider: 'iCloud', host: 'mx01.mail.icloud.com', reply: '550 5.7.1 Mail from IP 192.0.2.1 was rejected due to listing in Spamhaus SBL.', category: 'spam-related' },
  { provider: 'iCloud', host: 'mx01.mail.icloud.com', reply: '550 5.7.1 [CS01] Message rejected due to local policy.', category: 'policy-related' },
  { provider: 'iCloud', host: 'mx01.mail.icloud.com', reply: '550 5.1.2 host/domain does not accept mail', category: 'bad-domain' },

  // AOL
  { provider: 'AOL', host: 'mx-aol.mail.aol.com', reply: 'X-Postfix; Name service error for name=example.com type=MX: Malformed or unexpected name server reply', category: 'bad-domain', generic: 'routing-errors' },

  // Microsoft Exchange Online: learn.microsoft.com, NDRs in Exchange Online
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '550 5.7.511 Access denied, banned sender[192.0.2.1]. To request removal from this list please forward this message to delist@messaging.microsoft.com.', category: 'spam-related' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '550 5.7.506 Access Denied, Bad HELO', category: 'policy-related' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '550 5.7.501 Access denied, spam abuse detected', category: 'invalid-sender' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which cannot be sent via DATA and receiving system does not support BDAT (invalid characters)', category: 'content-related' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '550 5.4.300 Message expired', category: 'message-expired' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '451 4.4.317 Starttls is required to send mail', category: 'bad-configuration' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '451 4.4.4 Mail received as unauthenticated, incoming to a recipient domain configured in a hosted tenant which has no mail-enabled subscriptions.', category: 'bad-domain', generic: 'policy-related' },
  { provider: 'Exchange Online', host: 'example-com.mail.protection.outlook.com', reply: '554 5.4.14 Hop count exceeded - possible mail loop ATTR34', category: 'routing-errors' },

  // Outlook.com (consumer)
  { provider: 'Outlook.com', host: 'mx1.hotmail.com', reply: '554 The mail could not be delivered to the recipient because the domain is not reachable. Please check the domain and try again', category: 'bad-domain' },
  { provider: 'Outlook.com', host: 'mx4.hotmail.com', reply: '550 Requested action not taken: mailbox unavailable', category: 'bad-mailbox' },

  // Google: support.google.com/a/answer/3726730
  { provider: 'Gmail', host: 'gmail-smtp-in.l.google.com', reply: '550 5.7.1 Our system has detected that this message is likely suspicious due to the very low reputation of the sending domain.', category: 'spam-related' },
  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '421 4.7.0 IP not in whitelist for RCPT domain, closing connection.', category: 'policy-related' },
  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '421 4.7.0 TLS required for RCPT domain, closing connection.', category: 'bad-configuration' },
  { provider: 'Gmail', host: 'smtp-relay.gmail.com', reply: '550 5.7.0 Mail relay denied 192.0.2.1. Invalid credentials for relay for one of the domains in: example.com', category: 'relaying-issues' },
  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '554 5.4.6 Message exceeded 50 hops, this may indicate a mail loop.', category: 'routing-errors' },
  { provider: 'Google Workspace', host: 'mail-sor-f41.google.com', reply: "Your message wasn't delivered to user@example.com because the address couldn't be found. Check for typos or unnecessary spaces and try again.", category: 'bad-mailbox' },

  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '421 4.7.28 Gmail has detected this message exceeded its quota for sending messages with the same Message-ID:. To best protect our users, the message has been temporarily rejected.', category: 'policy-related', generic: 'quota-issues' },
  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '550 5.7.1 Encoded-word syntax is not permitted in message header Subject. To reduce the amount of spam sent to Gmail, this message has been blocked.', category: 'content-related' },
  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '525 5.7.10 SMTP protocol violation, no commands allowed to pipeline after STARTTLS.', category: 'protocol-errors', generic: 'bad-configuration' },
  { provider: 'Gmail', host: 'smtp.gmail.com', reply: '534 5.7.14 Please log in through your web browser and then try again.', category: 'bad-configuration' },
  { provider: 'Gmail', host: 'aspmx.l.google.com', reply: '421 4.4.5 Server busy, try again later.', category: 'other', generic: 'bad-connection' },

  // Mimecast: community.mimecast.com, Mimecast SMTP error codes
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '550 SPF Sender Invalid - envelope rejected', category: 'policy-related' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '550 Local CT IP Reputation - (reject)', category: 'spam-related' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '550 Administrative prohibition envelope blocked', category: 'invalid-sender' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '550 Message bounced due to Content Examination Policy', category: 'policy-related' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '553 This route requires encryption (TLS)', category: 'bad-configuration' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '554 Maximum email size exceeded', category: 'content-related' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '550 Invalid Recipient', category: 'bad-mailbox' },
  { provider: 'Mimecast', host: 'eu-smtp-inbound-1.mimecast.com', reply: '451 Unable to process connection at this time', category: 'other' },

  // Broadcom Email Security.cloud (MessageLabs): knowledge.broadcom.com article 169652
  { provider: 'MessageLabs', host: 'server-5.tower-1.messagelabs.com', reply: '553-DMARC domain authentication fail', category: 'policy-related' },
  { provider: 'MessageLabs', host: 'server-5.tower-1.messagelabs.com', reply: '501 Connection rejected by policy [7.7] 20805, please visit www.messagelabs.com/support for more details', category: 'spam-related' },
  { provider: 'MessageLabs', host: 'server-5.tower-1.messagelabs.com', reply: '553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)', category: 'invalid-sender' },
  { provider: 'MessageLabs', host: 'server-5.tower-1.messagelabs.com', reply: '553 Message Filtered', category: 'spam-related', generic: 'policy-related' },
  { provider: 'MessageLabs', host: 'server-5.tower-1.messagelabs.com', reply: '553 Recipient mailbox is not allowed', category: 'bad-mailbox' },
  { provider: 'MessageLabs', host: 'server-5.tower-1.messagelabs.com', reply: '553 You are trying to use me [server-5.tower-1.messagelabs.com] as a relay, but I have not been configured to let you [192.0.2.1, example] do this.', category: 'relaying-issues' },

  // au/KDDI: au.com mail support
  { provider: 'au', host: 'lsean.ezweb.ne.jp', reply: '550 : User unknown', category: 'policy-related' },
  { provider: 'au', host: 'msmx.au.com', reply: '550 <user@au.com>: User unknown', category: 'bad-mailbox' },

  // NTT docomo
  { provider: 'docomo', host: 'mfsmax.docomo.ne.jp', reply: { text: '550 Unknown user user@docomo.ne.jp', stage: 'data' }, category: 'policy-related' },
  { provider: 'docomo', host: 'mfsmax.docomo.ne.jp', reply: { enhancedCode: '5.1.1', text: '550 Unknown user user@docomo.ne.jp', stage: 'data' }, category: 'bad-mailbox' },
  { provider: 'docomo', host: 'mfsmax.docomo.ne.jp', reply: { enhancedCode: '5.2.0', text: '550 Unknown user user@docomo.ne.jp' }, category: 'policy-related' },
  { provider: 'docomo', host: 'mfsmax.docomo.ne.jp', reply: { text: '550 Unknown user user@docomo.ne.jp', stage: 'rcpt' }, category: 'bad-mailbox' },
  { provider: 'docomo', host: 'mfsmax.docomo.ne.jp', reply: '552 Too much mail data', category: 'quota-issues' },

  // I.UA: mail.i.ua/err/N/
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '550 The use of SMTP as mail gate is forbidden. See http://mail.i.ua/err/1/', category: 'relaying-issues' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '550 User is not found. See http://mail.i.ua/err/2/', category: 'bad-mailbox' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '550 Mailbox is frozen. See http://mail.i.ua/err/3/', category: 'inactive-mailbox' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '552 Mailbox is full. See http://mail.i.ua/err/4/', category: 'quota-issues' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '550 Letter sending limit is exceeded. See http://mail.i.ua/err/5/', category: 'bad-connection' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '550 IP-address of the sender is blacklisted. See http://mail.i.ua/err/9/', category: 'spam-related' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: "550 Couldn't check sender address. See http://mail.i.ua/err/8/", category: 'invalid-sender', generic: 'other' },
  { provider: 'I.UA', host: 'mx3.email.ua', reply: '550 Not in the list Mail address management. See http://mail.i.ua/err/10/', category: 'policy-related' },

  // Facebook: facebook.com/postmaster/response_codes
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '554 5.7.1 POL-P2 http://postmaster.facebook.com/response_codes?ip=192.0.2.1#pol Facebook will no longer accept mail from your mail server', category: 'spam-related', generic: 'inactive-mailbox' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '550 5.7.1 POL-P7 http://postmaster.facebook.com/response_codes#pol The message does not comply with domain authentication requirements', category: 'policy-related' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '554 5.7.1 POL-P5 http://postmaster.facebook.com/response_codes#pol The message contains a virus', category: 'virus-related' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '550 5.1.1 RCP-P3 http://postmaster.facebook.com/response_codes#rcp The recipient privacy settings blocked the delivery', category: 'policy-related', generic: 'bad-mailbox' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '550 5.1.1 RCP-P1 http://postmaster.facebook.com/response_codes#rcp The attempted recipient address does not exist', category: 'bad-mailbox' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '450 4.2.1 RCP-T4 http://postmaster.facebook.com/response_codes#rcp The attempted recipient address is currently deactivated', category: 'inactive-mailbox' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '552 5.3.4 MSG-P1 http://postmaster.facebook.com/response_codes#msg The message exceeds the maximum allowed size', category: 'content-related' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '550 5.1.8 DNS-P1 http://postmaster.facebook.com/response_codes#dns Your SMTP MAIL FROM domain does not exist', category: 'invalid-sender', generic: 'bad-domain' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '550 5.7.1 DNS-P3 http://postmaster.facebook.com/response_codes#dns Your mail server does not have a reverse DNS record', category: 'policy-related' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '421 4.7.0 CON-T2 http://postmaster.facebook.com/response_codes#con Too many connections to Facebook mail servers', category: 'bad-connection' },
  { provider: 'Facebook', host: 'mx-in.facebook.com', reply: '450 4.3.0 RCP-T1 http://postmaster.facebook.com/response_codes#rcp The attempted recipient address is not currently available', category: 'other' },

  // Spectrum / Charter: spectrumbusiness.net understanding-email-error-codes
  { provider: 'Spectrum', host: 'mx.charter.net', reply: '554 5.7.1 Your IP address has been blocked due to suspicious activity. AUP#I-1000', category: 'spam-related' },
  { provider: 'Spectrum', host: 'mx.charter.net', reply: '554 5.7.1 This email account has been blocked from sending emails. AUP#O-1010', category: 'invalid-sender' },
  { provider: 'Spectrum', host: 'mx.charter.net', reply: '554 5.7.1 A reverse DNS entry is required. AUP#I-1100', category: 'policy-related' },
  { provider: 'Spectrum', host: 'mx.charter.net', reply: '421 4.7.0 Too many connections. AUP#I-1310', category: 'bad-connection' },
  { provider: 'Spectrum', host: 'mx.charter.net', reply: '421 4.7.0 cmsmtp 192.0.2.1 blocked. AUP#In-1370', category: 'other' },
  { provider: 'Spectrum', host: 'mx.charter.net', reply: '552 5.3.4 Message larger than the maximum size of 20MB. AUP#O-1530', category: 'content-related' },
];

const withHost = (reply: Row['reply'], remoteHost: string | null): ReplyInput =>
  typeof reply === 'string' ? { text: reply, remoteHost } : { ...reply, remoteHost };

describe('provider rules by remote host (config/remote-host-rules.json)', () => {
  it.each(ROWS.map((row) => [`${row.provider} (${row.host}): ${typeof row.reply === 'string' ? row.reply : row.reply.text}`, row] as const))('%s', (_name, row) => {
    const classification = classifyReply(withHost(row.reply, row.host));
    expect(classification.category).toBe(row.category);
    expect(defaultBounceRules().rules.find((rule) => rule.id === classification.rule)?.remoteHosts).not.toBeNull();
  });

  it('the same reply from a host that is not the provider falls to the generic rules', () => {
    for (const row of ROWS.filter((candidate) => candidate.generic !== undefined)) {
      const elsewhere = classifyReply(withHost(row.reply, 'mx.example.net'));
      expect(elsewhere.category, row.provider).toBe(row.generic);
      expect(defaultBounceRules().rules.find((rule) => rule.id === elsewhere.rule)?.remoteHosts ?? null, row.provider).toBeNull();
    }
  });

  it('a reply of unknown remote host never matches a provider rule', () => {
    for (const row of ROWS) {
      for (const unknown of [null, undefined, '']) {
        const input = typeof row.reply === 'string' ? { text: row.reply } : { ...row.reply };
        const classification = classifyReply(unknown === undefined ? input : { ...input, remoteHost: unknown });
        expect(defaultBounceRules().rules.find((rule) => rule.id === classification.rule)?.remoteHosts ?? null, row.provider).toBeNull();
      }
      // A plain string reply carries no host either.
      if (typeof row.reply === 'string') expect(classifyReply(row.reply).rule).toBe(classifyReply({ text: row.reply }).rule);
    }
  });

  it('matches a domain suffix on label boundaries, case-insensitively, with or without a trailing dot', () => {
    const reply = '550 This IP has sent too many to too many recipients this hour. IB607';
    expect(classifyReply({ text: reply, remoteHost: 'P3SMTP.SecureServer.NET.' }).rule).toBe('godaddy-ip-rate');
    expect(classifyReply({ text: reply, remoteHost: 'secureserver.net' }).rule).toBe('godaddy-ip-rate');
    expect(classifyReply({ text: reply, remoteHost: 'notsecureserver.net' }).rule).not.toBe('godaddy-ip-rate');
    expect(classifyReply({ text: reply, remoteHost: 'secureserver.net.example.org' }).rule).not.toBe('godaddy-ip-rate');
    expect(classifyReply({ text: reply, remoteHost: '192.0.2.1' }).rule).not.toBe('godaddy-ip-rate');
  });

  it('reads a host name out of what reports write', () => {
    expect(remoteHostName('mx.example.net')).toBe('mx.example.net');
    expect(remoteHostName('dns; MX.Example.NET.')).toBe('mx.example.net');
    expect(remoteHostName('lsean.ezweb.ne.jp. (192.0.2.1, the server for the domain ezweb.ne.jp.)')).toBe('lsean.ezweb.ne.jp');
    expect(remoteHostName('[192.0.2.1]')).toBe('192.0.2.1');
    expect(remoteHostName('  ')).toBeNull();
    expect(remoteHostName(null)).toBeNull();
  });

  it('every provider rule decides at least one row, and every shipped rule names its source and family', () => {
    const reached = new Set(ROWS.map((row) => classifyReply(withHost(row.reply, row.host)).rule));
    const remote = defaultBounceRules().rules.filter((rule) => rule.remoteHosts !== null);
    expect(remote.length).toBeGreaterThanOrEqual(50);
    expect(remote.map((rule) => rule.id).filter((id) => !reached.has(id))).toEqual([]);
    expect(remote.filter((rule) => rule.source === null || rule.mta === null).map((rule) => rule.id)).toEqual([]);
  });

  it('is tried before the generic rules, which stay in their own order after it', () => {
    const all = defaultBounceRules().rules;
    const firstGeneric = all.findIndex((rule) => rule.remoteHosts === null);
    expect(all.slice(firstGeneric).every((rule) => rule.remoteHosts === null)).toBe(true);
    const generic = loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: null }).rules;
    expect(all.slice(firstGeneric).map((rule) => rule.id)).toEqual(generic.map((rule) => rule.id));
    const raw = JSON.parse(readFileSync(DEFAULT_REMOTE_HOST_RULES_PATH, 'utf8')) as { rules: Array<{ category: string }> };
    expect(firstGeneric).toBe(raw.rules.length);
    expect(raw.rules.map((rule) => rule.category).filter((category) => !(CATEGORIES as readonly string[]).includes(category))).toEqual([]);
  });

  it('withoutMta leaves a provider\'s rules out (holdout by family)', () => {
    const without = loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { withoutMta: 'godaddy' });
    expect(without.rules.some((rule) => rule.mta === 'godaddy')).toBe(false);
    expect(classifyReply({ text: '550 This IP has sent too many to too many recipients this hour. IB607', remoteHost: 'smtp.secureserver.net' }, without).rule).not.toBe('godaddy-ip-rate');
  });
});

describe('remote-host rules files', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  function writeRemote(content: unknown): string {
    dir ??= mkdtempSync(join(tmpdir(), 'rebound-remote-rules-'));
    const path = join(dir, 'remote-host-rules.json');
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  const provider = { id: 'acme-blocked', mta: 'acme', remoteHost: 'acme.example', pattern: 'ACME-42', category: 'spam-related', why: 'test' };
  const generic = { defaults: { permanent: 'other', temporary: 'other' }, rules: [{ id: 'generic-unknown', pattern: 'user unknown', category: 'bad-mailbox', why: 'test' }] };

  it('an operator can point to their own file; its rules come first', () => {
    const path = writeRemote({ rules: [provider] });
    const rules = loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: path });
    expect(rules.remoteHostSource).toBe(path);
    expect(rules.rules[0]?.id).toBe('acme-blocked');
    expect(classifyReply({ text: '550 user unknown ACME-42', remoteHost: 'mx1.acme.example' }, rules).category).toBe('spam-related');
    expect(classifyReply({ text: '550 user unknown ACME-42', remoteHost: 'mx1.other.example' }, rules).category).toBe('bad-mailbox');
  });

  it('compileBounceRules takes the provider rules in memory', () => {
    const rules = compileBounceRules(generic, 'generic', { remoteHostRules: { data: { rules: [provider] }, source: 'remote' } });
    expect(rules.rules.map((rule) => rule.id)).toEqual(['acme-blocked', 'generic-unknown']);
  });

  it('refuses a provider rule without remoteHost, a bad host, a rule with only remoteHost and an id the generic file uses', () => {
    const path = writeRemote({
      rules: [
        { id: 'no-host', pattern: 'x', category: 'other', why: 'test' },
        { id: 'bad-host', remoteHost: 'mx example', pattern: 'x', category: 'other', why: 'test' },
        { id: 'host-only', remoteHost: 'acme.example', category: 'other', why: 'test' },
        { ...provider, id: 'unknown-recipient' },
      ],
    });
    let message = '';
    try {
      loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: path });
    } catch (error) {
      expect(error).toBeInstanceOf(BounceRulesError);
      message = (error as Error).message;
    }
    expect(message).toContain(`remote-host rules ${path}`);
    expect(message).toMatch(/rules\[0\] \("no-host"\): needs remoteHost/);
    expect(message).toMatch(/rules\[1\] \("bad-host"\): remoteHost: must be a host name or domain/);
    expect(message).toMatch(/rules\[2\] \("host-only"\): needs at least one of code, enhancedCode, pattern/);
    expect(message).toMatch(/rules\[3\] \("unknown-recipient"\): id is already used by rules\[\d+\] of the bounce rules/);
  });

  it('reports a provider file that is not JSON, does not exist, or has no rules', () => {
    expect(() => loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: writeRemote('{ "rules": [') })).toThrow(/remote-host rules .* are not valid JSON/);
    expect(() => loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: join(dir ?? tmpdir(), 'missing.json') })).toThrow(/cannot read remote-host rules/);
    expect(() => loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: writeRemote({ rules: [] }) })).toThrow(/remote-host rules .*\n {2}rules: must hold at least one rule/);
  });

  it('an unknown key in a rule names the rule', () => {
    const path = writeRemote({ rules: [{ ...provider, remotehost: 'x' }] });
    expect(() => loadBounceRules(DEFAULT_BOUNCE_RULES_PATH, { remoteHostRules: path })).toThrow(/rules\[0\] \("acme-blocked"\): unknown key\(s\) "remotehost"/);
  });
});
