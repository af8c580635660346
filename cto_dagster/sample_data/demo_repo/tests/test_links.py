import unittest

from shop import links


class LinksTest(unittest.TestCase):
    def test_a_page_is_named_after_its_path(self):
        self.assertEqual(links.label("/order-history"), "Order History")
        self.assertEqual(links.label("/"), "Home")

    def test_a_link_points_at_its_page(self):
        self.assertEqual(links.link("/cart"), '<a href="/cart">Cart</a>')
