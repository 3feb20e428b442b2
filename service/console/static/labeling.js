// The labeling queue, keyboard first: Enter stores the selected label (the model's suggestion
// unless another was picked) and moves on; 1-9 pick a label and store it; typing filters the
// labels; u undoes the last label (deletes that sample by id); s skips. Without this script
// every item is a plain form.
(function () {
  "use strict";
  const queue = document.getElementById("queue");
  if (!queue) return;
  const model = queue.dataset.model;
  const csrf = queue.dataset.csrf;
  const labels = queue.dataset.labels.split("\n");
  const items = Array.from(queue.querySelectorAll(".item"));
  const filter = document.getElementById("label-filter");
  const status = document.getElementById("queue-status");
  const counter = document.getElementById("labels-since");
  const done = []; // [{index, id}] newest last: what u undoes
  let index = 0;
  let busy = false;

  function say(text) { status.textContent = text; }
  function select(i) { return items[i] && items[i].querySelector("select"); }

  function show(i) {
    items.forEach((item, k) => item.classList.toggle("current", k === i));
    index = i;
    if (i >= items.length) { say("Queue done: reload for more."); return; }
    items[i].focus();
  }

  async function post(url, fields) {
    const body = new URLSearchParams(Object.assign({ csrf_token: csrf }, fields));
    const response = await fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json" },
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    return answer;
  }

  async function store(label) {
    if (busy || index >= items.length) return;
    busy = true;
    const item = items[index];
    try {
      const answer = await post("/models/" + encodeURIComponent(model) + "/labels",
        { prediction_id: item.dataset.predictionId, label: label });
      done.push({ index: index, id: answer.ids[0] });
      item.classList.add("done");
      counter.textContent = String(Number(counter.textContent) + answer.accepted);
      say("Stored " + label + ".");
      filter.value = "";
      show(index + 1);
    } catch (error) {
      say("Not stored: " + error.message);
    } finally {
      busy = false;
    }
  }

  async function undo() {
    const last = done.pop();
    if (!last || busy) return;
    busy = true;
    try {
      await post("/models/" + encodeURIComponent(model) + "/labels/" +
        encodeURIComponent(last.id) + "/delete", {});
      items[last.index].classList.remove("done");
      counter.textContent = String(Math.max(0, Number(counter.textContent) - 1));
      say("Undone: the label is deleted.");
      show(last.index);
    } catch (error) {
      done.push(last);
      say("Not undone: " + error.message);
    } finally {
      busy = false;
    }
  }

  function filtered() {
    const text = filter.value.trim().toLowerCase();
    return labels.filter((l) => l.toLowerCase().includes(text));
  }

  filter.addEventListener("input", () => {
    const matches = filtered();
    const choice = select(index);
    if (choice && matches.length) choice.value = matches[0];
    say(matches.length ? "Enter stores " + matches[0] + "." : "No label matches.");
  });

  // Keys on a control (a link, a button, a field) are that control's: Enter follows a link of
  // the page rather than storing a label.
  const CONTROLS = "a[href], input, select, textarea, button, summary, [contenteditable]";

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const inFilter = event.target === filter;
    const onControl = event.target.matches && event.target.matches(CONTROLS) && !inFilter;
    if (onControl) return;
    const choice = select(index);
    if (event.key === "Enter") {
      event.preventDefault();
      if (choice) store(choice.value);
    } else if (inFilter) {
      if (event.key === "Escape") { filter.value = ""; show(index); }
    } else if (/^[1-9]$/.test(event.key)) {
      const label = labels[Number(event.key) - 1];
      if (label) { event.preventDefault(); store(label); }
    } else if (event.key === "u") {
      event.preventDefault(); undo();
    } else if (event.key === "s") {
      event.preventDefault(); say("Skipped."); show(index + 1);
    } else if (event.key.length === 1 && /\S/.test(event.key)) {
      filter.focus(); // the key lands in the filter
    }
  });

  queue.addEventListener("click", (event) => {
    if (event.target.matches("img.fit")) event.target.classList.toggle("zoomed");
  });
  queue.addEventListener("submit", (event) => {
    // The item's own button: store through the same path as Enter.
    event.preventDefault();
    const form = event.target;
    index = items.indexOf(form.closest(".item"));
    store(form.querySelector("select").value);
  });
  show(0);
})();
