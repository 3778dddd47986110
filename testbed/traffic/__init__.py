"""Background traffic beside the jobs: iperf3 pairs and Poisson flows of empirical sizes."""
