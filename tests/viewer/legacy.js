// The legacy JPEG relay in the viewer page: a camera rolled back with
// SIMPLE_STREAMING=0 sends no offer but stream:frame events, each one JPEG
// in base64 (control-plane contract, section 5). viewer.js hands each frame
// here and shows what decodes; these are the frame rules and counts.
window.LegacyFrames = (function () {
  'use strict';

  function create() {
    return { received: 0, shown: 0, bytes: 0, lastSeq: 0, seqGaps: 0, decodeErrors: 0, width: null, height: null };
  }

  // Checks and counts one frame and decodes it off-screen; `shown(src)`
  // runs once it decoded. False for a malformed frame (not counted).
  function receive(jpeg, frame, shown) {
    if (frame.mime !== 'image/jpeg' || typeof frame.data !== 'string' || !Number.isInteger(frame.seq)) {
      return false;
    }
    // seq rises by exactly 1 from one frame to the next.
    if (jpeg.lastSeq && frame.seq !== jpeg.lastSeq + 1) jpeg.seqGaps += 1;
    jpeg.lastSeq = frame.seq;
    jpeg.received += 1;
    jpeg.bytes += Math.floor((frame.data.length * 3) / 4);
    const picture = new Image();
    picture.src = 'data:image/jpeg;base64,' + frame.data;
    picture.decode().then(
      () => {
        jpeg.shown += 1;
        jpeg.width = picture.naturalWidth;
        jpeg.height = picture.naturalHeight;
        shown(picture.src);
      },
      (err) => {
        jpeg.decodeErrors += 1;
        console.warn('frame', frame.seq, 'does not decode', err);
      },
    );
    return true;
  }

  // The counts in the page's snapshot terms: frames shown are
  // framesDecoded, the JPEG bytes bytesReceived.
  function fill(jpeg, snap) {
    snap.timestampMs = performance.timeOrigin + performance.now();
    snap.framesDecoded = jpeg.shown;
    snap.framesReceived = jpeg.received;
    snap.frameWidth = jpeg.width;
    snap.frameHeight = jpeg.height;
    snap.bytesReceived = jpeg.bytes;
    return snap;
  }

  return { create: create, receive: receive, fill: fill };
})();
