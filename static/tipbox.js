/* tipbox: optional help for the form. Without this script the form works exactly the same.
   - keeps a draft in sessionStorage while typing (Zalo may reload the page), cleared once sent or on leaving;
   - "Leave quickly" replaces the page, so Back does not return to the form;
   - shrinks chosen photos on the phone (long side <= 1600 px, JPEG) and shows the sizes;
   - one tap sends once, and not sooner than the form's minimum fill time (a draft restored after a reload can be
     sent at once, and the server takes a form sent that fast for a bot's);
   - says "too big" before sending files over the form's limit, instead of losing them to a 413;
   - a page shown again from the back/forward cache is loaded afresh, so a stale form is never sent.
   ES5 only, no cookies, nothing sent anywhere: old Android WebViews (Chromium 80) and iOS 13 run it. */
(function () {
  "use strict";
  var PREFIX = "tipbox-draft:";
  // Not "contact": a browser may keep session storage on disk to restore the session, and it may name the sender.
  var FIELDS = ["what", "where", "when", "receipt"];
  var LONG_SIDE = 1600;
  var QUALITY = 0.8;
  var MARGIN = 500; // ms past the minimum fill time, for the time the request takes to leave
  var loaded = new Date().getTime();

  function storage() {
    try {
      var s = window.sessionStorage;
      s.setItem(PREFIX + "probe", "1");
      s.removeItem(PREFIX + "probe");
      return s;
    } catch (e) {
      return null;
    }
  }

  function clearDrafts(s) {
    if (!s) { return; }
    for (var i = s.length - 1; i >= 0; i--) {
      var key = s.key(i);
      if (key && key.indexOf(PREFIX) === 0) { s.removeItem(key); }
    }
  }

  function keepDraft(form, s) {
    var key = PREFIX + location.pathname;
    var saved = null;
    try { saved = JSON.parse(s.getItem(key) || "null"); } catch (e) { saved = null; }
    if (saved) {
      // What the server gave back (a form returned with a problem) wins over the draft.
      for (var i = 0; i < FIELDS.length; i++) {
        var field = form.elements[FIELDS[i]];
        if (field && !field.value && saved[FIELDS[i]]) { field.value = saved[FIELDS[i]]; }
      }
      var radios = form.querySelectorAll("input[name=category]");
      var chosen = false;
      for (var j = 0; j < radios.length; j++) { chosen = chosen || radios[j].checked; }
      for (var k = 0; k < radios.length && !chosen; k++) {
        if (radios[k].value === saved.category) { radios[k].checked = true; }
      }
      if (saved.receipt) {
        var details = form.querySelector("details");
        if (details) { details.open = true; }
      }
    }
    function save() {
      var draft = {};
      for (var i = 0; i < FIELDS.length; i++) {
        var field = form.elements[FIELDS[i]];
        if (field) { draft[FIELDS[i]] = field.value; }
      }
      var checked = form.querySelector("input[name=category]:checked");
      draft.category = checked ? checked.value : "";
      try { s.setItem(key, JSON.stringify(draft)); } catch (e) { /* storage full: the form still works */ }
    }
    form.addEventListener("input", save);
    form.addEventListener("change", save);
  }

  function sizeText(bytes) {
    if (bytes >= 1048576) { return (bytes / 1048576).toFixed(1) + " MB"; }
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function showSizes(input, before) {
    var out = document.getElementById(input.id + "-size");
    if (!out) { return; }
    var parts = [];
    for (var i = 0; i < input.files.length; i++) {
      var now = sizeText(input.files[i].size);
      parts.push(before && before[i] && before[i] !== input.files[i].size ? sizeText(before[i]) + " \u2192 " + now : now);
    }
    out.textContent = parts.join(", ");
  }

  function shrink(file, done) {
    if (!/^image\/(jpeg|png|webp|bmp)$/.test(file.type) || !window.URL || !URL.createObjectURL) {
      done(file);
      return;
    }
    var url = URL.createObjectURL(file);
    var img = new Image();
    img.onload = function () {
      var w = img.naturalWidth, h = img.naturalHeight;
      var scale = Math.min(1, LONG_SIDE / Math.max(w, h));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      var ctx = canvas.getContext("2d");
      URL.revokeObjectURL(url);
      if (!ctx || !canvas.toBlob) { done(file); return; }
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(function (blob) {
        // Re-encoding also drops the photo's metadata; keep it only if it is smaller.
        if (!blob || (blob.size >= file.size && scale === 1)) { done(file); return; }
        try {
          done(new File([blob], "photo.jpg", { type: "image/jpeg" }));
        } catch (e) {
          done(file);
        }
      }, "image/jpeg", QUALITY);
    };
    img.onerror = function () { URL.revokeObjectURL(url); done(file); };
    img.src = url;
  }

  function shrinkPhotos(input, whenReady) {
    var files = [], before = [];
    for (var i = 0; i < input.files.length; i++) { files.push(input.files[i]); before.push(input.files[i].size); }
    var list;
    try { list = new DataTransfer(); } catch (e) { list = null; }
    if (!list || !files.length) { showSizes(input); return; }
    var results = [];
    var left = files.length;
    input.setAttribute("data-busy", "1");
    files.forEach(function (file, index) {
      shrink(file, function (result) {
        results[index] = result;
        left -= 1;
        if (left) { return; }
        for (var j = 0; j < results.length; j++) { list.items.add(results[j]); }
        try { input.files = list.files; } catch (e) { /* cannot replace: the originals are sent */ }
        input.removeAttribute("data-busy");
        showSizes(input, before);
        if (input.getAttribute("data-send-after")) {
          input.removeAttribute("data-send-after");
          whenReady();
        }
      });
    });
  }

  function chosenBytes(form) {
    var total = 0;
    var inputs = form.querySelectorAll("input[type=file]");
    for (var i = 0; i < inputs.length; i++) {
      var files = inputs[i].files || [];
      for (var j = 0; j < files.length; j++) { total += files[j].size; }
    }
    return total;
  }

  function showTooBig(form) {
    var inputs = form.querySelectorAll("input[type=file]");
    var input = inputs[0];
    for (var i = inputs.length - 1; i >= 0; i--) {
      if (inputs[i].files && inputs[i].files.length) { input = inputs[i]; }
    }
    if (!input) { return; }
    var id = input.id + "-error";
    var message = document.getElementById(id);
    if (!message) {
      message = document.createElement("p");
      message.className = "error";
      message.id = id;
      input.parentNode.insertBefore(message, input);
    }
    message.textContent = form.getAttribute("data-too-big") || "";
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id + " " + input.id + "-size");
    input.focus();
  }

  function showSending(form, on) {
    var button = form.querySelector("button[type=submit]");
    var label = button && button.querySelector("span");
    if (on) {
      form.setAttribute("data-sending", "1");
    } else {
      form.removeAttribute("data-sending");
    }
    if (!button) { return; }
    if (on) {
      if (label && button.getAttribute("data-sending")) {
        button.setAttribute("data-label", label.textContent);
        label.textContent = button.getAttribute("data-sending");
      }
      button.setAttribute("aria-disabled", "true");
    } else {
      if (label && button.getAttribute("data-label")) { label.textContent = button.getAttribute("data-label"); }
      button.removeAttribute("aria-disabled");
    }
  }

  // Returns what sends a held-back form once it can go (the photos shrunk, the minimum fill time passed).
  function sendOnce(form) {
    var minFill = parseFloat(form.getAttribute("data-min-fill")) || 0;
    var maxUpload = parseInt(form.getAttribute("data-max-upload"), 10);
    var readyAt = loaded + minFill * 1000;

    function tooBig() {
      return !isNaN(maxUpload) && chosenBytes(form) > maxUpload;
    }

    function busy() {
      var photo = form.elements.photo;
      return !!(photo && photo.getAttribute("data-busy"));
    }

    function whenReady() {
      if (busy()) {
        form.elements.photo.setAttribute("data-send-after", "1"); // shrinkPhotos calls back when done
        return;
      }
      var wait = readyAt - new Date().getTime();
      if (wait > 0) {
        window.setTimeout(whenReady, wait + MARGIN);
        return;
      }
      if (tooBig()) {
        showSending(form, false);
        showTooBig(form);
        return;
      }
      form.submit();
    }

    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-sending")) { event.preventDefault(); return; }
      if (!busy() && tooBig()) {
        // The text stays; only the files must change.
        event.preventDefault();
        showTooBig(form);
        return;
      }
      showSending(form, true);
      if (busy() || new Date().getTime() < readyAt) {
        // Still shrinking the photos, or sooner than a person fills the form (a restored draft): send later.
        event.preventDefault();
        whenReady();
      }
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        // From the back/forward cache: its token may be used or stale. Load the form afresh (a GET, never a
        // resubmission); the draft brings the words back.
        location.replace(location.href.split("#")[0]);
        return;
      }
      showSending(form, false);
    });
    return whenReady;
  }

  function start() {
    var s = storage();
    var leave = document.querySelector("a.leave");
    if (leave) {
      leave.addEventListener("click", function (event) {
        event.preventDefault();
        clearDrafts(s);
        location.replace(leave.href);
      });
    }
    if (document.querySelector("main[data-sent]")) { clearDrafts(s); }
    var form = document.querySelector("form[data-draft]");
    if (!form) { return; }
    if (s) { keepDraft(form, s); }
    var whenReady = sendOnce(form);
    var photo = form.elements.photo;
    if (photo) { photo.addEventListener("change", function () { shrinkPhotos(photo, whenReady); }); }
    var voice = form.elements.voice;
    if (voice) { voice.addEventListener("change", function () { showSizes(voice); }); }
    var problem = document.getElementById("problems") || document.getElementById("notice");
    if (problem && document.activeElement !== problem) { problem.focus(); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
