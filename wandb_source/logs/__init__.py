"""W&B run logs (`.wandb` files) read with no server: record framing (`records`), one log → one run
(`run_log`), and the dlt source over a folder of logs (`source`)."""
