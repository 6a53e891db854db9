'use strict';
'require view';
'require rpc';
'require ui';

var callDevices = rpc.declare({ object: 'leash', method: 'devices', expect: { '': {} } });
var callDestinations = rpc.declare({ object: 'leash', method: 'destinations', params: [ 'device' ], expect: { '': {} } });
var callExplain = rpc.declare({ object: 'leash', method: 'explain', params: [ 'device', 'destination' ], expect: { '': {} } });
var callConsent = rpc.declare({ object: 'leash', method: 'consent', params: [ 'device', 'selector' ], expect: { '': {} } });
var callRevoke = rpc.declare({ object: 'leash', method: 'revoke', params: [ 'device', 'selector' ], expect: { '': {} } });

function checked(res) {
	if (res && res.error)
		throw new Error(res.error);
	return res;
}

function bytes(n) {
	n = +n || 0;
	var u = [ 'B', 'kB', 'MB', 'GB', 'TB' ], i = 0;
	while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
	return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

return view.extend({
	load: function() {
		var want = new URLSearchParams(window.location.search).get('device');
		return callDevices().then(function(res) {
			var devices = res.devices || [];
			var dev = want || (devices[0] && devices[0].mac);
			return Promise.all([ res, dev, dev ? callDestinations(dev) : { destinations: [] } ]);
		});
	},

	// The selector a click consents to: the first name, else the address.
	selector: function(dst) {
		return (dst.names && dst.names.length) ? dst.names[0] : dst.address;
	},

	// A destination's row keeps the verdict of its last flow, so after a
	// change the daemon's explain says what holds now.
	act: function(promise, dst) {
		var self = this;
		return promise.then(checked).then(function() {
			return Promise.all([ self.refresh(), self.explain(dst) ]);
		}).catch(function(e) {
			ui.addNotification(null, E('p', {}, [ _('leash: %s').format(e.message) ]), 'danger');
		});
	},

	explain: function(dst) {
		var self = this;
		return callExplain(this.device, this.selector(dst)).then(checked).then(function(x) {
			ui.showModal(_('Why %s').format(self.selector(dst)), [
				E('table', { 'class': 'table', 'id': 'leash-explain' }, Object.keys(x).map(function(k) {
					var v = x[k];
					return E('tr', { 'class': 'tr' }, [
						E('td', { 'class': 'td' }, [ k ]),
						E('td', { 'class': 'td' }, [ (v !== null && typeof v == 'object') ? JSON.stringify(v) : String(v) ])
					]);
				})),
				E('div', { 'class': 'right' }, [ E('button', { 'class': 'btn', 'click': ui.hideModal }, [ _('Close') ]) ])
			]);
		}).catch(function(e) {
			ui.addNotification(null, E('p', {}, [ _('leash: %s').format(e.message) ]), 'danger');
		});
	},

	renderTable: function(res) {
		var self = this;
		if (res.error)
			return E('div', { 'class': 'alert-message warning', 'id': 'leash-destinations' }, [ _('leash: %s').format(res.error) ]);

		var dsts = res.destinations || [];
		var head = E('tr', { 'class': 'tr table-titles' }, [ _('Names'), _('Address'), _('Country'), _('AS'), _('Up'), _('Down'), _('Verdict'), _('Rule'), '' ].map(function(t) {
			return E('th', { 'class': 'th' }, [ t ]);
		}));
		if (!dsts.length)
			return E('table', { 'class': 'table', 'id': 'leash-destinations' }, [ head,
				E('tr', { 'class': 'tr placeholder' }, [ E('td', { 'class': 'td' }, [ E('em', {}, [ _('This device has talked to nobody yet.') ]) ]) ]) ]);

		return E('table', { 'class': 'table', 'id': 'leash-destinations' }, [ head ].concat(dsts.map(function(d) {
			var sel = self.selector(d);
			var consented = (d.rule || '').indexOf('consent:') == 0;
			return E('tr', { 'class': 'tr', 'data-address': d.address }, [
				E('td', { 'class': 'td' }, [ (d.names || []).join(', ') || '-' ]),
				E('td', { 'class': 'td' }, [ d.address ]),
				E('td', { 'class': 'td' }, [ d.country || '-' ]),
				E('td', { 'class': 'td' }, [ d.asn != null ? 'AS' + d.asn : '-' ]),
				E('td', { 'class': 'td' }, [ bytes(d.bytes_up) ]),
				E('td', { 'class': 'td' }, [ bytes(d.bytes_down) ]),
				E('td', { 'class': 'td leash-verdict' }, [ d.verdict || '-' ]),
				E('td', { 'class': 'td' }, [ d.rule || '-' ]),
				E('td', { 'class': 'td cbi-section-actions' }, [
					consented
						? E('button', { 'class': 'btn cbi-button-negative', 'click': function() { return self.act(callRevoke(self.device, d.rule.substr(8)), d); } }, [ _('Revoke') ])
						: E('button', { 'class': 'btn cbi-button-positive', 'click': function() { return self.act(callConsent(self.device, sel), d); } }, [ _('Consent') ]),
					' ',
					E('button', { 'class': 'btn cbi-button-action', 'click': function() { return self.explain(d); } }, [ _('Explain') ])
				])
			]);
		})));
	},

	refresh: function() {
		var self = this;
		return callDestinations(this.device).then(function(res) {
			var t = document.getElementById('leash-destinations');
			if (t)
				t.parentNode.replaceChild(self.renderTable(res), t);
		});
	},

	render: function(data) {
		var self = this, devices = data[0].devices || [];
		this.device = data[1];

		var select = E('select', { 'class': 'cbi-input-select', 'id': 'leash-device', 'change': function(ev) {
			self.device = ev.target.value;
			return self.refresh();
		} }, devices.map(function(d) {
			return E('option', { 'value': d.mac, 'selected': d.mac == self.device ? '' : null }, [ d.name ? d.name + ' (' + d.mac + ')' : d.mac ]);
		}));

		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('leash: destinations') ]),
			E('div', { 'class': 'cbi-section' }, [
				E('label', {}, [ _('Device') + ' ', select ]),
				this.device ? this.renderTable(data[2]) : E('p', {}, [ E('em', {}, [ _('No devices seen yet.') ]) ])
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
