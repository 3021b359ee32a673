/* tipbox: optional help for the form. Without this script the form works exactly the same.
   - keeps a draft in sessionStorage while typing (Zalo may reload the page), cleared once sent or on leaving;
   - "Leave quickly" replaces the page, so Back does not return to the form;
   - photos: shrunk on the phone (long side <= 1600 px, JPEG), shown as thumbnails with a remove button; photos
     chosen later add to those chosen before;
   - voice: where the browser lets the page use the microphone (getUserMedia and MediaRecorder; Zalo does not),
     "Tap to speak" records up to 5 minutes, and the recording becomes the form's voice note; a voice note shows
     its length and can be played back, removed or recorded again;
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
  var MAX_SECONDS = 300;
  // What the server cleans (app/attachments), best first: WebM or Ogg with Opus; else MP4 (Safari before iOS 18.4
  // records nothing else), which MediaRecorder writes fragmented and the server rebuilds as a plain M4A.
  var RECORDINGS = [["audio/webm;codecs=opus", "webm"], ["audio/webm", "webm"], ["audio/ogg;codecs=opus", "ogg"],
    ["audio/mp4", "m4a"]];
  // In-app browsers known to refuse the microphone to pages: no "Tap to speak" that cannot work (the user agent is
  // read here, on the phone, and sent nowhere). Any other refusal is handled when it comes.
  var NO_MICROPHONE = / Zalo[\/ ]/;
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
    // One draft per form, whatever the language it is shown in (the language is in the address).
    var key = PREFIX + form.getAttribute("data-draft");
    var saved = null;
    try { saved = JSON.parse(s.getItem(key) || "null"); } catch (e) { saved = null; }
    if (saved) {
      // What the server gave back (a form returned with a problem) wins over the draft.
      for (var i = 0; i < FIELDS.length; i++) {
        var field = form.elements[FIELDS[i]];
        if (field && !field.value && saved[FIELDS[i]]) {
          field.value = saved[FIELDS[i]];
          openAround(field);
        }
      }
      var radios = form.querySelectorAll("input[name=category]");
      var chosen = false;
      for (var j = 0; j < radios.length; j++) { chosen = chosen || radios[j].checked; }
      for (var k = 0; k < radios.length && !chosen; k++) {
        if (radios[k].value === saved.category) { radios[k].checked = true; }
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

  function openAround(field) {
    for (var node = field.parentNode; node; node = node.parentNode) {
      if (node.tagName === "DETAILS") { node.open = true; }
    }
  }

  function sizeText(bytes) {
    if (bytes >= 1048576) { return (bytes / 1048576).toFixed(1) + " MB"; }
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function clock(seconds) {
    var s = Math.floor(seconds);
    return Math.floor(s / 60) + ":" + (s % 60 < 10 ? "0" : "") + (s % 60);
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.textContent = text; }
    return node;
  }

  function button(text, onClick) {
    var node = element("button", "", text);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  // Whether a script may put files into a file input (DataTransfer; not in iOS before 14.1, nor old WebViews).
  function canSetFiles() {
    try {
      var list = new DataTransfer();
      list.items.add(new File(["x"], "x.txt", { type: "text/plain" }));
      var probe = document.createElement("input");
      probe.type = "file";
      probe.files = list.files;
      return probe.files.length === 1;
    } catch (e) {
      return false;
    }
  }

  function setFiles(input, files) {
    var list = new DataTransfer();
    for (var i = 0; i < files.length; i++) { list.items.add(files[i]); }
    input.files = list.files;
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

  // The chosen photos as thumbnails. Where a script may set the input's files: each shrunk, with a remove button,
  // and choosing again adds to them; elsewhere the input holds what was last chosen, as without this script.
  function photos(input, whenReady, settable) {
    var list = document.getElementById("photo-list");
    var kept = []; // {file, before}: what the input holds, and each photo's size as chosen
    var urls = [];

    function show() {
      for (var u = 0; u < urls.length; u++) { URL.revokeObjectURL(urls[u]); }
      urls = [];
      list.textContent = "";
      kept.forEach(function (photo, index) {
        var item = element("li");
        var thumb = element("img");
        thumb.alt = "";
        thumb.src = URL.createObjectURL(photo.file);
        urls.push(thumb.src);
        item.appendChild(thumb);
        var now = sizeText(photo.file.size);
        item.appendChild(element("span", "size", photo.before !== photo.file.size ? sizeText(photo.before) + " \u2192 " + now : now));
        if (settable) {
          item.appendChild(button(list.getAttribute("data-remove"), function () {
            kept.splice(index, 1);
            setFiles(input, kept.map(function (p) { return p.file; }));
            show();
            input.focus();
          }));
        }
        list.appendChild(item);
      });
    }

    input.addEventListener("change", function () {
      var chosen = [];
      for (var i = 0; i < input.files.length; i++) { chosen.push(input.files[i]); }
      if (!settable) {
        kept = chosen.map(function (file) { return { file: file, before: file.size }; });
        show();
        return;
      }
      if (!chosen.length) { setFiles(input, kept.map(function (p) { return p.file; })); return; }
      var results = [];
      var left = chosen.length;
      input.setAttribute("data-busy", "1");
      chosen.forEach(function (file, index) {
        shrink(file, function (result) {
          results[index] = { file: result, before: file.size };
          left -= 1;
          if (left) { return; }
          kept = kept.concat(results);
          setFiles(input, kept.map(function (p) { return p.file; }));
          input.removeAttribute("data-busy");
          show();
          whenReady();
        });
      });
    });
  }

  // The voice note: recorded on the page where the browser allows it, or chosen; its length, play back, remove.
  function voice(form, input, whenReady, settable) {
    var list = document.getElementById("voice-list");
    var rec = document.getElementById("rec");
    var start = document.getElementById("rec-start");
    var on = document.getElementById("rec-on");
    var time = document.getElementById("rec-time");
    var pick = form.querySelector("label[for=voice]");
    var pickText = pick.querySelector("span");
    var pickWords = pickText.textContent;
    var recording = null;
    var canRecord = false;
    var url = null;
    var type = null;
    for (var t = 0; t < RECORDINGS.length && settable && !type; t++) {
      if (window.MediaRecorder && MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(RECORDINGS[t][0])) {
        type = RECORDINGS[t];
      }
    }

    function show(file, seconds, recorded) {
      if (url) { URL.revokeObjectURL(url); url = null; }
      list.textContent = "";
      if (canRecord) { start.hidden = !!file; } // "Record again" stands beside a recording
      if (!file) { return null; }
      var item = element("li");
      var player = element("audio");
      player.controls = true;
      player.preload = "metadata";
      url = player.src = URL.createObjectURL(file);
      var words = element("span", "size", list.getAttribute("data-kind") + (seconds ? " " + clock(seconds) : "") + " \u00b7 " + sizeText(file.size));
      if (!seconds) {
        player.addEventListener("loadedmetadata", function () {
          if (isFinite(player.duration)) {
            words.textContent = list.getAttribute("data-kind") + " " + clock(player.duration) + " \u00b7 " + sizeText(file.size);
          }
        });
      }
      item.appendChild(player);
      item.appendChild(words);
      if (recorded) { item.appendChild(button(list.getAttribute("data-again"), again)); }
      if (settable) {
        item.appendChild(button(list.getAttribute("data-remove"), function () {
          setFiles(input, []);
          show(null);
          (canRecord ? start : input).focus();
        }));
      }
      list.appendChild(item);
      return player;
    }

    function again() {
      setFiles(input, []);
      show(null);
      record();
    }

    function blocked() {
      // Zalo and other in-app browsers refuse the microphone: the file input, as without this script.
      canRecord = false;
      start.hidden = true;
      on.hidden = true;
      document.getElementById("rec-blocked").hidden = false;
      pickText.textContent = pickWords;
      pick.className = "pick";
      input.setAttribute("capture", "");
      input.removeAttribute("data-busy");
      input.focus();
      whenReady();
    }

    function record() {
      var chunks = [];
      var began = 0;
      var timer = null;
      start.hidden = true;
      input.setAttribute("data-busy", "1");
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        var recorder;
        try {
          recorder = new MediaRecorder(stream, { mimeType: type[0], audioBitsPerSecond: 32000 });
        } catch (e) {
          stream.getTracks().forEach(function (track) { track.stop(); });
          blocked();
          return;
        }
        recorder.ondataavailable = function (event) { if (event.data && event.data.size) { chunks.push(event.data); } };
        recorder.onstop = function () {
          window.clearInterval(timer);
          stream.getTracks().forEach(function (track) { track.stop(); });
          recording = null;
          var seconds = (new Date().getTime() - began) / 1000;
          on.hidden = true;
          input.removeAttribute("data-busy");
          if (!chunks.length) { show(null); start.focus(); whenReady(); return; } // stopped before any sound
          var file = new File(chunks, "voice." + type[1], { type: recorder.mimeType || type[0] });
          setFiles(input, [file]);
          show(file, seconds, true).focus();
          whenReady();
        };
        recorder.onerror = function () { recorder.onstop = null; stream.getTracks().forEach(function (track) { track.stop(); }); blocked(); };
        recorder.start(1000);
        recording = recorder;
        began = new Date().getTime();
        time.textContent = clock(0);
        on.hidden = false;
        document.getElementById("rec-stop").focus();
        timer = window.setInterval(function () {
          var seconds = (new Date().getTime() - began) / 1000;
          time.textContent = clock(seconds);
          if (seconds >= MAX_SECONDS) { stop(); }
        }, 250);
      }, blocked);
    }

    function stop() {
      if (recording && recording.state !== "inactive") { recording.stop(); }
    }

    input.addEventListener("change", function () {
      show(input.files[0] || null, 0, false);
    });
    if (type && navigator.mediaDevices && navigator.mediaDevices.getUserMedia && !NO_MICROPHONE.test(navigator.userAgent)) {
      rec.hidden = false;
      canRecord = true;
      // The file input stays, for a recording made before; without `capture` it offers the phone's files.
      input.removeAttribute("capture");
      pickText.textContent = pick.getAttribute("data-choose");
      pick.className = "pick second";
      start.addEventListener("click", record);
      document.getElementById("rec-stop").addEventListener("click", stop);
      window.addEventListener("pagehide", stop);
    }
    return stop;
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
      message = element("p", "error");
      message.id = id;
      input.parentNode.insertBefore(message, input);
    }
    message.textContent = form.getAttribute("data-too-big") || "";
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id + " " + input.id + "-list");
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

  // Returns what sends a held-back form once it can go (photos shrunk, recording stopped, minimum fill time passed).
  function sendOnce(form) {
    var minFill = parseFloat(form.getAttribute("data-min-fill")) || 0;
    var maxUpload = parseInt(form.getAttribute("data-max-upload"), 10);
    var readyAt = loaded + minFill * 1000;
    var stopRecording = null;

    function tooBig() {
      return !isNaN(maxUpload) && chosenBytes(form) > maxUpload;
    }

    function busy() {
      return !!form.querySelector("input[data-busy]");
    }

    function whenReady() {
      if (!form.getAttribute("data-sending")) { return; } // called back after a photo or a recording: not sending
      if (busy()) {
        if (stopRecording) { stopRecording(); } // Send while recording: the recording goes with the form
        return; // the photos or the recording call back when done
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
        // Still shrinking photos or recording, or sooner than a person fills the form (a restored draft): later.
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
    return {
      whenReady: whenReady,
      onStop: function (stop) { stopRecording = stop; }
    };
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
    var sending = sendOnce(form);
    var photo = form.elements.photo;
    var voiceInput = form.elements.voice;
    var settable = canSetFiles();
    if (photo && document.getElementById("photo-list")) { photos(photo, sending.whenReady, settable); }
    if (voiceInput && document.getElementById("voice-list")) {
      sending.onStop(voice(form, voiceInput, sending.whenReady, settable));
    }
    var problem = document.getElementById("problems") || document.getElementById("notice");
    if (problem && document.activeElement !== problem) { problem.focus(); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
