/* tipbox: optional help for the form. Without this script the form works exactly the same.
   - keeps a draft in sessionStorage while typing (Zalo may reload the page), cleared once sent or on leaving;
   - "Leave quickly" replaces the page, so Back does not return to the form;
   - shrinks chosen photos on the phone (long side <= 1600 px, JPEG) and shows the sizes;
   - one tap sends once.
   ES5 only, no cookies, nothing sent anywhere: old Android WebViews (Chromium 80) and iOS 13 run it. */
(function () {
  "use strict";
  var PREFIX = "tipbox-draft:";
  var FIELDS = ["what", "where", "when", "contact", "receipt"];
  var LONG_SIDE = 1600;
  var QUALITY = 0.8;

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

  function shrinkPhotos(input) {
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
        if (input.getAttribute("data-send-after")) { input.form.submit(); }
      });
    });
  }

  function sendOnce(form) {
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-sending")) { event.preventDefault(); return; }
      form.setAttribute("data-sending", "1");
      if (button) {
        var label = button.querySelector("span");
        if (label && button.getAttribute("data-sending")) { label.textContent = button.getAttribute("data-sending"); }
        button.setAttribute("aria-disabled", "true");
      }
      var photo = form.elements.photo;
      if (photo && photo.getAttribute("data-busy")) {
        // Still shrinking the photos: send as soon as they are ready.
        event.preventDefault();
        photo.setAttribute("data-send-after", "1");
      }
    });
    // Coming back to the page (Back, bfcache): it can be sent again.
    window.addEventListener("pageshow", function () { form.removeAttribute("data-sending"); });
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
    sendOnce(form);
    var photo = form.elements.photo;
    if (photo) { photo.addEventListener("change", function () { shrinkPhotos(photo); }); }
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
