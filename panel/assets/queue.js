// The queue page: every action asks first. No inline script (the CSP forbids it): each action's
// form carries its question in data-confirm; the general form's question is built from its fields.
'use strict';

const QUEUE_CONSEQUENCES = {
  flush: 'Deferred mail is retried at the relay\'s next poll; attempts and age limits stay as they are.',
  hold: 'Queued and deferred mail is not sent until it is released.',
  release: 'Held mail is queued again and sent at the relay\'s next poll.',
  delete: 'Queued, deferred and held mail leaves the queue unsent, without a bounce. This cannot be undone.',
  bounce: 'Queued, deferred and held mail bounces now, unsent, with a permanent_fail event and webhook. This cannot be undone.',
};

/** "Hold the mail of domain example.com?" and what that does, from the general form's fields. */
function generalQuestion(form) {
  const action = form.elements.namedItem('action');
  const by = form.elements.namedItem('by');
  const value = form.elements.namedItem('value').value.trim();
  const verb = action.options[action.selectedIndex].text;
  let selection;
  if (by.value === 'all') selection = 'all deferred mail';
  else if (value === '') return null; // the relay names what is missing; nothing to confirm
  else if (by.value === 'queue-ids') {
    const ids = value.split(/[\s,]+/).filter((id) => id !== '');
    selection = ids.length === 1 ? `the mail of queue id ${ids[0]}` : `the mail of ${ids.length} queue ids`;
  } else if (by.value === 'domain') selection = `the mail to domain ${value}`;
  else selection = `the mail from sender ${value}`;
  return `${verb} ${selection}?\n${QUEUE_CONSEQUENCES[action.value] ?? ''}`;
}

function confirmQueueActions() {
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-confirm')) return;
    const question = form.id === 'queue-action-form' ? generalQuestion(form) : form.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // One click, one action: a second click while the answer is on its way would run it twice.
    for (const button of form.querySelectorAll('button')) button.disabled = true;
  });
}

document.addEventListener('DOMContentLoaded', () => {
  confirmQueueActions();
});

// Back to this page from the browser's cache: its buttons are usable again.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) for (const button of document.querySelectorAll('main button')) button.disabled = false;
});
