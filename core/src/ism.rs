//! Server manifests (.ism / .isml) (filled in by the server-manifest work).
