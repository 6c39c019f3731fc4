//! Sample descriptions and codec strings (filled in by the codec work).
