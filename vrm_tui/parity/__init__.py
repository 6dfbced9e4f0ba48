"""Parity: compare rust's answers with typescript's on mirrored traffic (DESIGN "Parity")."""
