import pytest

from kvmodel.base.units import UNITS, dimension_of, to_si


def test_decimal_and_binary_bytes_are_distinct():
    assert to_si(1, "GB") == 1e9
    assert to_si(1, "GiB") == 2**30
    assert to_si(1, "MiB") == 2**20
    assert to_si(3.35, "TB/s") == pytest.approx(3.35e12)


def test_bit_rates_divide_by_eight():
    assert to_si(400, "Gb/s") == pytest.approx(50e9)
    assert dimension_of("Gb/s") == dimension_of("GB/s") == "bandwidth"


def test_compute_time_money():
    assert to_si(989.4, "TFLOP/s") == pytest.approx(989.4e12)
    assert to_si(5, "us") == pytest.approx(5e-6)
    assert to_si(36, "USD/h") == pytest.approx(0.01)
    assert to_si(10, "USD/GB") == pytest.approx(1e-8)


@pytest.mark.parametrize("bad", ["p", "gb", "G", "TFLOPS", "", "GB/h"])
def test_unknown_units_rejected(bad):
    with pytest.raises(ValueError, match="unknown unit"):
        to_si(1, bad)


def test_every_unit_has_positive_factor():
    assert all(f > 0 for _, f in UNITS.values())
