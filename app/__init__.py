"""tipbox: an anonymous tip box that relays a tiny mobile form to a border-guard post's mailbox."""
