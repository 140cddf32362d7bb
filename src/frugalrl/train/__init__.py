"""The training loop: jitted segments of env steps vmapped over seeds, and the host side."""
