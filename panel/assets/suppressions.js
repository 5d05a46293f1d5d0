// The Suppressions page: the import's progress bar, and refusals (400, 413) shown in place. No
// inline script (the CSP forbids it): wired here from ids and data attributes.
'use strict';

/**
 * htmx leaves a 4xx answer unswapped; the page's forms (data-swap-errors) answer a refusal with
 * the page and its message in it (a bad address, a file too large), so swap those too.
 */
function showRefusals() {
  const problem = document.getElementById('request-problem');
  document.body.addEventListener('htmx:beforeSwap', (event) => {
    if (problem) problem.hidden = true;
    const status = event.detail.xhr.status;
    // detail.elt is the swap's target here; the element that made the request is requestConfig.elt.
    const source = event.detail.requestConfig ? event.detail.requestConfig.elt : null;
    if ((status === 400 || status === 413) && source && source.closest('[data-swap-errors]')) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    } else if (status === 401) {
      // The session ended (sign-out elsewhere, idle, a restart): the sign-in page, as a page load would.
      event.detail.isError = false;
      window.location.assign('/sign-in');
    } else if (status >= 400 && problem) {
      // A refusal with no page in it (403: a viewer, or a stale CSRF token; 500): said here, not only in the console.
      event.detail.isError = false;
      problem.textContent = `Not done: the relay answered ${status}: ${String(event.detail.xhr.responseText).slice(0, 300)}`;
      problem.hidden = false;
    }
  });
}

/**
 * The import's bar: the upload's share sent (htmx passes on the XMLHttpRequest's upload progress
 * events), then, once the whole file is sent, a bar with no value while the relay reads and
 * stores the rows. The response's own download progress events come after and are ignored.
 */
function wireImportProgress() {
  const form = document.getElementById('import-form');
  const bar = document.getElementById('import-progress');
  const status = document.getElementById('import-status');
  if (!form || !bar || !status) return;
  let uploaded = false;
  form.addEventListener('htmx:beforeSend', () => {
    uploaded = false;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = 'Uploading…';
  });
  form.addEventListener('htmx:xhr:progress', (event) => {
    if (uploaded || !event.detail.lengthComputable || event.detail.total === 0) return;
    const percent = Math.floor((event.detail.loaded / event.detail.total) * 100);
    bar.value = percent;
    status.textContent = `Uploading… ${percent}%`;
    if (event.detail.loaded >= event.detail.total) {
      uploaded = true;
      // No value: an indeterminate bar, as the relay's side has no byte count to show.
      bar.removeAttribute('value');
      status.textContent = 'Uploaded; storing the rows…';
    }
  });
  form.addEventListener('htmx:afterRequest', (event) => {
    bar.hidden = true;
    const ok = event.detail.successful || event.detail.xhr.status === 400 || event.detail.xhr.status === 413;
    status.textContent = ok ? 'Done: the result is below.' : `The import failed (HTTP ${event.detail.xhr.status || 'no answer'}); nothing was reported.`;
    // The file stays chosen, so a corrected import is one click after fixing the file.
  });
}

document.addEventListener('DOMContentLoaded', () => {
  showRefusals();
  wireImportProgress();
});
