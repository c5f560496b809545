"""Streamlit explorer of run folders (`make app`); one module per tab under `apps/tabs/`."""
