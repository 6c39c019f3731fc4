"""Helpers the test files share. Test files import from here (and from harness), never from
each other."""
