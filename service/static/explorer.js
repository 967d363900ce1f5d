// The explorer page: asks the service's JSON endpoints (relative URLs: the page may sit under a prefix) and
// renders each answer as it arrives. The URL holds what is shown (?word=, ?a=&b=&c=), so views can be shared.
'use strict';
(() => {
  const K = 10;
  const SUGGESTIONS = 8;
  const TIMEOUT_MS = 10000;
  const KEY_ITEM = 'skipgram-api-key';
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (selector, root = document) => root.querySelector(selector);
  const input = $('#word');
  const list = $('#suggestions');
  const state = {word: '', a: '', b: '', c: ''};
  const views = {word: 0, analogy: 0, suggest: 0}; // generations: answers for an older view are dropped
  let limits = {max_word_length: 100};
  let facts = null; // Promise of /readyz's answer (null when it failed)
  let typing = 0; // the pause after a keystroke before suggestions are asked for

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ------------------------------------------------------------------------------ the API key

  let keyInMemory = null; // where sessionStorage is unavailable
  const keys = {
    get() {
      try { return sessionStorage.getItem(KEY_ITEM); } catch (error) { return keyInMemory; }
    },
    set(key) {
      keyInMemory = key;
      try { sessionStorage.setItem(KEY_ITEM, key); } catch (error) { /* kept in memory */ }
    },
    clear() {
      keyInMemory = null;
      try { sessionStorage.removeItem(KEY_ITEM); } catch (error) { /* nothing stored */ }
    },
  };

  let keyWait = null; // one prompt, however many requests wait for it
  function askKey(refused) {
    if (!keyWait) {
      keyWait = new Promise((resolve) => {
        const form = $('#keyform');
        $('#keynote').textContent = refused
          ? 'The service refused that key. Enter its API key again.'
          : 'This service needs an API key. Enter it once; it is kept for this tab only.';
        form.hidden = false;
        $('#key').focus();
        form.onsubmit = (event) => {
          event.preventDefault();
          const key = $('#key').value.trim();
          if (!key) return;
          keys.set(key);
          $('#key').value = '';
          form.hidden = true;
          keyWait = null;
          resolve();
        };
      });
    }
    return keyWait;
  }

  // --------------------------------------------------------------------------------- requests

  async function api(path) {
    for (;;) {
      const key = keys.get();
      const headers = {Accept: 'application/json'};
      if (key) headers.Authorization = `Bearer ${key}`;
      let response;
      try {
        const signal = AbortSignal.timeout ? AbortSignal.timeout(TIMEOUT_MS) : undefined;
        response = await fetch(path, {headers, signal});
      } catch (error) {
        throw new ApiError(0, error.name === 'TimeoutError'
          ? `The service did not answer within ${TIMEOUT_MS / 1000} seconds.`
          : 'The service cannot be reached.');
      }
      if (response.status === 401) {
        if (key && keys.get() === key) keys.clear();
        await askKey(Boolean(key));
        continue;
      }
      let body = null;
      try { body = await response.json(); } catch (error) { body = null; }
      if (!response.ok) {
        throw new ApiError(response.status, (body && body.error) || `The service answered ${response.status}.`);
      }
      if (body === null) throw new ApiError(response.status, 'The service sent an answer that is not JSON.');
      return body;
    }
  }

  const query = (params) => new URLSearchParams(params).toString();

  // ----------------------------------------------------------------------------------- rendering

  function el(tag, attributes = {}, text = '') {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  // One row of a bar chart: the word (a button when it can be explored), a bar of `share` (0..1), a number.
  function barRow(word, share, label, explorable = true) {
    const row = el('li');
    const name = explorable ? el('button', {type: 'button', class: 'word'}, word) : el('span', {class: 'word'}, word);
    if (explorable) name.addEventListener('click', () => explore(word, true));
    const bar = el('span', {class: 'bar', 'aria-hidden': 'true'});
    const fill = el('span');
    fill.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
    bar.append(fill);
    row.append(name, bar, el('span', {class: 'value'}, label));
    return row;
  }

  function status(section, text, isError = false) {
    const line = $('.status', section);
    line.textContent = text;
    line.classList.toggle('error', isError);
  }

  function showMessage(text) {
    const message = $('#message');
    message.textContent = text;
    message.hidden = !text;
  }

  const cosine = (score) => score.toFixed(3);
  const probability = (p) => (p >= 0.001 ? p.toFixed(3) : p.toExponential(1));
  const percent = (share) => `${Math.round(share * 100)} %`;

  function renderNeighbours(body) {
    const section = $('#neighbours');
    status(section, body.neighbors.length ? '' : 'The model has no other words.');
    $('.bars', section).replaceChildren(...body.neighbors.map((n) => barRow(n.word, n.score, cosine(n.score))));
  }

  function renderContext(body) {
    const section = $('#context');
    $('.caveat', section).textContent = body.objective === 'naive-softmax'
      ? 'Probabilities of the model\'s softmax over the whole vocabulary.'
      : 'Negative-sampling scores are a ranking of context words, not calibrated probabilities.';
    const top = body.context.length ? body.context[0].prob : 1;
    status(section, '');
    $('.bars', section).replaceChildren(
      ...body.context.map((c) => barRow(c.word, top > 0 ? c.prob / top : 0, probability(c.prob))));
  }

  function noContext() {
    const section = $('#context');
    section.hidden = false;
    $('.caveat', section).textContent = '';
    $('.bars', section).replaceChildren();
    status(section, 'This model has no output vectors (imported word vectors), so it defines no context words.');
  }

  function renderMap(body) {
    const section = $('#map');
    const svg = $('svg', section);
    const points = [{word: body.word, x: body.x, y: body.y, centre: true}, ...body.neighbors];
    const [width, height, padX, padY] = [480, 320, 90, 24];
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const scale = Math.min((width - 2 * padX) / (maxX - minX || 1), (height - 2 * padY) / (maxY - minY || 1));
    const offsetX = width / 2 - scale * (minX + maxX) / 2;
    const offsetY = height / 2 + scale * (minY + maxY) / 2; // y grows upwards on the map
    const taken = []; // label boxes placed so far, the centre word's first: later labels move off them
    const nodes = points.map((p) => {
      const [x, y] = [offsetX + scale * p.x, offsetY - scale * p.y];
      const {left, dy, box} = placeLabel(x, y, 7.5 * [...p.word].length + 4, taken, width, height);
      taken.push(box);
      const group = document.createElementNS(SVG, 'g');
      group.setAttribute('class', p.centre ? 'point centre' : 'point');
      group.setAttribute('tabindex', '0');
      group.setAttribute('role', 'button');
      const circle = document.createElementNS(SVG, 'circle');
      circle.setAttribute('cx', x.toFixed(1));
      circle.setAttribute('cy', y.toFixed(1));
      circle.setAttribute('r', p.centre ? '6' : '4');
      const label = document.createElementNS(SVG, 'text');
      label.setAttribute('x', (left ? x - 8 : x + 8).toFixed(1));
      label.setAttribute('y', (y + 4 + dy).toFixed(1));
      label.setAttribute('text-anchor', left ? 'end' : 'start');
      label.textContent = p.word;
      const title = document.createElementNS(SVG, 'title');
      title.textContent = p.centre ? p.word : `${p.word}: cosine ${cosine(p.score)}`;
      group.append(title, circle, label);
      if (dy) { // a label moved off another: a line says whose it is
        const leader = document.createElementNS(SVG, 'line');
        const ends = {x1: x, y1: y, x2: left ? x - 8 : x + 8, y2: y + dy};
        for (const [name, value] of Object.entries(ends)) leader.setAttribute(name, value.toFixed(1));
        group.prepend(leader);
      }
      group.addEventListener('click', () => explore(p.word, true));
      group.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          explore(p.word, true);
        }
      });
      return group;
    });
    svg.replaceChildren(...nodes.slice(1), nodes[0]); // the centre word drawn last, on top
    status(section, '');
    $('#map-caption').textContent = `“${body.word}” and its ${body.neighbors.length} nearest words, by PCA of `
      + `their unit vectors: the axes hold ${percent(body.explained[0])} and ${percent(body.explained[1])} `
      + 'of their variance.';
  }

  // Where a label of width w goes beside its point (x, y): the side and vertical shift, among nearby places,
  // whose box overlaps the boxes already `taken` least (none, mostly) and stays inside the picture.
  function placeLabel(x, y, w, taken, width, height) {
    let best = null;
    for (const dy of [0, 15, -15, 30, -30, 45, -45, 60, -60, 75, -75]) {
      for (const left of x > width / 2 ? [true, false] : [false, true]) {
        const box = {x0: left ? x - 8 - w : x + 6, x1: left ? x - 6 : x + 8 + w, y0: y + dy - 10, y1: y + dy + 6};
        const outside = box.x0 < 0 || box.x1 > width || box.y0 < 0 || box.y1 > height;
        const overlap = taken.reduce((sum, t) => sum + Math.max(0, Math.min(box.x1, t.x1) - Math.max(box.x0, t.x0))
          * Math.max(0, Math.min(box.y1, t.y1) - Math.max(box.y0, t.y0)), 0);
        const cost = 4 * overlap + (outside ? 1e6 : 0) + Math.abs(dy);
        if (!best || cost < best.cost) best = {left, dy, box, cost};
        if (!overlap && !outside) return best;
      }
    }
    return best;
  }

  // A section's request failed: an unknown word or a refused input is said once, above the sections;
  // the service failing is said in the section.
  function failed(section, error, word) {
    if (error.status === 404 || error.status === 400) {
      for (const id of ['#neighbours', '#map', '#context']) $(id).hidden = true;
      showMessage(error.status === 404 ? `“${word}” is not in this model's vocabulary.` : error.message);
    } else {
      status(section, `Could not load this: ${error.message}`, true);
    }
  }

  // ----------------------------------------------------------------------------------- views

  function explore(word, push) {
    word = word.trim();
    const view = ++views.word;
    const current = () => view === views.word;
    clearTimeout(typing); // suggestions for what was typed are no longer wanted
    hideSuggestions();
    input.value = word;
    state.word = word;
    if (push) pushState();
    showMessage('');
    document.title = word ? `${word} · skipgram explorer` : 'skipgram explorer';
    for (const id of ['#neighbours', '#map', '#context']) $(id).hidden = !word;
    if (!word) {
      if (push) showMessage('Type a word to explore it.');
      return;
    }
    for (const id of ['#neighbours', '#map', '#context']) {
      status($(id), 'Loading…');
      $('.bars, svg', $(id)).replaceChildren();
    }
    $('#map-caption').textContent = '';
    $('#context .caveat').textContent = '';
    const params = query({word, k: K});
    api(`similar?${params}`).then(
      (body) => current() && renderNeighbours(body), (error) => current() && failed($('#neighbours'), error, word));
    api(`map?${params}`).then(
      (body) => current() && renderMap(body), (error) => current() && failed($('#map'), error, word));
    facts.then((info) => {
      if (!current()) return;
      if (info && !info.context_probs) {
        noContext();
        return;
      }
      api(`context-probs?${params}`).then((body) => current() && renderContext(body), (error) => {
        if (!current()) return;
        if (error.status === 409) noContext(); else failed($('#context'), error, word);
      });
    });
  }

  function solveAnalogy(push) {
    const section = $('#analogy');
    const view = ++views.analogy;
    const words = ['a', 'b', 'c'].map((name) => state[name]);
    for (const name of ['a', 'b', 'c']) $(`#${name}`).value = state[name];
    if (push) pushState();
    $('.bars', section).replaceChildren();
    if (!words.some(Boolean)) {
      status(section, push ? 'Fill in the three words.' : '');
      return;
    }
    if (!words.every(Boolean)) {
      status(section, 'Fill in the three words.', true);
      return;
    }
    if (words.some((w) => w.includes(','))) {
      status(section, 'Words holding a comma cannot be used in an analogy.', true);
      return;
    }
    const [a, b, c] = words;
    status(section, 'Loading…');
    api(`similar?${query({positive: `${b},${c}`, negative: a, k: K})}`).then((body) => {
      if (view !== views.analogy) return;
      const best = body.neighbors[0];
      status(section, best ? `${a} is to ${b} as ${c} is to ${best.word}.`
        : 'No answer: the model has no other words.');
      const rows = body.neighbors.map((n) => barRow(n.word, n.score, cosine(n.score)));
      if (rows.length) rows[0].classList.add('best');
      $('.bars', section).replaceChildren(...rows);
    }, (error) => {
      if (view !== views.analogy) return;
      const unknown = error.status === 404 && /^unknown word: /.test(error.message);
      const word = error.message.slice('unknown word: '.length);
      status(section, unknown ? `“${word}” is not in this model's vocabulary.` : error.message, true);
    });
  }

  // ------------------------------------------------------------------------------ suggestions

  function hideSuggestions() {
    views.suggest += 1;
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  }

  function options() {
    return [...list.querySelectorAll('li')];
  }

  function activate(index) {
    options().forEach((option, i) => {
      option.classList.toggle('active', i === index);
      option.setAttribute('aria-selected', String(i === index));
      if (i === index) {
        input.setAttribute('aria-activedescendant', option.id);
        option.scrollIntoView({block: 'nearest'});
      }
    });
  }

  const activeIndex = () => options().findIndex((option) => option.classList.contains('active'));

  async function suggest() {
    if (document.activeElement !== input) return; // the box was left before the pause ended
    const prefix = input.value.trimStart();
    const view = ++views.suggest;
    const hint = $('#hint');
    if (prefix.length > limits.max_word_length) {
      hideSuggestions();
      hint.textContent = `Words have at most ${limits.max_word_length} characters.`;
      return;
    }
    let body;
    try {
      body = await api(`words?${query({prefix, limit: SUGGESTIONS})}`);
    } catch (error) {
      if (view === views.suggest) hint.textContent = `No suggestions: ${error.message}`;
      return;
    }
    if (view !== views.suggest) return;
    hint.textContent = body.words.length ? `${body.words.length} suggestions: ↑ ↓ to choose, Enter to explore.`
      : `No word of this model starts with “${prefix}”.`;
    list.replaceChildren(...body.words.map((word, i) => {
      const option = el('li', {role: 'option', id: `suggestion-${i}`, 'aria-selected': 'false'}, word);
      option.addEventListener('mousedown', (event) => event.preventDefault()); // keeps the focus in the box
      option.addEventListener('click', () => explore(word, true));
      return option;
    }));
    list.hidden = !body.words.length;
    input.setAttribute('aria-expanded', String(!list.hidden));
  }

  input.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(suggest, 120);
  });
  input.addEventListener('blur', hideSuggestions);
  input.addEventListener('keydown', (event) => {
    const count = options().length;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      if (list.hidden) {
        suggest();
        return;
      }
      const at = activeIndex();
      activate(event.key === 'ArrowDown' ? (at + 1) % count : (at <= 0 ? count - 1 : at - 1));
    } else if (event.key === 'Enter' && !list.hidden && activeIndex() >= 0) {
      event.preventDefault();
      explore(options()[activeIndex()].textContent, true);
    } else if (event.key === 'Escape') {
      hideSuggestions();
    }
  });

  $('#search').addEventListener('submit', (event) => {
    event.preventDefault();
    explore(input.value, true);
  });

  $('#analogy-form').addEventListener('submit', (event) => {
    event.preventDefault();
    for (const name of ['a', 'b', 'c']) state[name] = $(`#${name}`).value.trim();
    solveAnalogy(true);
  });

  // ------------------------------------------------------------------------------------ the URL

  function pushState() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(state)) if (value) params.set(name, value);
    const url = `${location.pathname}${params.toString() ? `?${params}` : ''}`;
    if (url !== location.pathname + location.search) history.pushState(null, '', url);
  }

  function fromUrl() {
    const params = new URLSearchParams(location.search);
    for (const name of Object.keys(state)) state[name] = (params.get(name) || '').trim();
    explore(state.word, false);
    solveAnalogy(false);
  }

  window.addEventListener('popstate', fromUrl);

  // ------------------------------------------------------------------------------------- start

  facts = api('readyz').then((info) => {
    const index = `${info.index.type} index (${info.index.exact ? 'exact' : 'approximate'})`;
    $('#facts').textContent = [info.model, `${info.vocab_size.toLocaleString('en')} words`,
      `${info.dim} dimensions`, index, info.objective || 'imported vectors', `digest ${info.digest}`].join(' · ');
    limits = info.limits || limits;
    for (const box of [input, $('#a'), $('#b'), $('#c')]) box.maxLength = limits.max_word_length;
    return info;
  }, (error) => {
    $('#facts').textContent = `The model's facts are unavailable: ${error.message}`;
    $('#facts').classList.add('error');
    return null;
  });
  fromUrl();
})();
