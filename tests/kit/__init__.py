"""The shared test kit: fixtures and helpers every test folder uses (agent configs and power
cycles in ``agent``, the man-in-the-middle scene of the attack tests in ``attacks``)."""
