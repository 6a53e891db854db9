'use strict';
'require view';
'require rpc';
'require ui';
'require poll';

var callDevices = rpc.declare({ object: 'leash', method: 'devices', expect: { '': {} } });
var callQuarantine = rpc.declare({ object: 'leash', method: 'quarantine', params: [ 'device' ], expect: { '': {} } });
var callRelease = rpc.declare({ object: 'leash', method: 'release', params: [ 'device' ], expect: { '': {} } });
var callConsent = rpc.declare({ object: 'leash', method: 'consent', params: [ 'device', 'selector' ], expect: { '': {} } });

// Every write answers an object; {error} is leash's refusal, shown as is.
function checked(res) {
	if (res && res.error)
		throw new Error(res.error);
	return res;
}

return view.extend({
	load: function() {
		return callDevices();
	},

	act: function(fn, mac) {
		var self = this;
		return fn(mac).then(checked).then(function() {
			return self.refresh();
		}).catch(function(e) {
			ui.addNotification(null, E('p', {}, [ _('leash: %s').format(e.message) ]), 'danger');
		});
	},

	askConsent: function(mac, name) {
		var self = this;
		var input = E('input', { 'class': 'cbi-input-text', 'id': 'leash-consent-selector', 'placeholder': 'example.com, 203.0.113.0/24, country:DE, asn:3320' });
		ui.showModal(_('Consent for %s').format(name), [
			E('p', {}, [ _('What may this device reach? A name (and the names below it), an address or network, country:CC or asn:N.') ]),
			input,
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'btn', 'click': ui.hideModal }, [ _('Cancel') ]),
				' ',
				E('button', { 'class': 'btn cbi-button-positive', 'id': 'leash-consent-grant', 'click': function() {
					var sel = input.value.trim();
					if (!sel)
						return;
					ui.hideModal();
					return self.act(function(m) { return callConsent(m, sel); }, mac);
				} }, [ _('Grant') ])
			])
		]);
	},

	rows: function(devices) {
		var self = this;
		return devices.map(function(d) {
			var name = d.name || d.mac;
			var q = d.state == 'quarantined';
			return E('tr', { 'class': 'tr', 'data-mac': d.mac }, [
				E('td', { 'class': 'td', 'data-title': _('Name') }, [ d.name || '-' ]),
				E('td', { 'class': 'td', 'data-title': _('MAC') }, [ d.mac ]),
				E('td', { 'class': 'td', 'data-title': _('Vendor') }, [ d.vendor || '-' ]),
				E('td', { 'class': 'td', 'data-title': _('Addresses') }, [ (d.addresses || []).join(', ') || '-' ]),
				E('td', { 'class': 'td', 'data-title': _('Profile') }, [ d.profile ]),
				E('td', { 'class': 'td leash-state', 'data-title': _('State') }, [ d.state ]),
				E('td', { 'class': 'td cbi-section-actions' }, [
					q ? E('button', { 'class': 'btn cbi-button-positive', 'click': function() { return self.act(callRelease, d.mac); } }, [ _('Release') ])
					  : E('button', { 'class': 'btn cbi-button-negative', 'click': function() { return self.act(callQuarantine, d.mac); } }, [ _('Quarantine') ]),
					' ',
					E('button', { 'class': 'btn cbi-button-action', 'click': function() { return self.askConsent(d.mac, name); } }, [ _('Consent…') ]),
					' ',
					E('a', { 'class': 'btn', 'href': L.url('admin/services/leash/destinations') + '?device=' + encodeURIComponent(d.mac) }, [ _('Destinations') ])
				])
			]);
		});
	},

	renderTable: function(res) {
		if (res.error)
			return E('div', { 'class': 'alert-message warning', 'id': 'leash-devices' }, [ _('leash is not answering: %s').format(res.error) ]);

		var devices = res.devices || [];
		return E('table', { 'class': 'table', 'id': 'leash-devices' }, [
			E('tr', { 'class': 'tr table-titles' }, [ _('Name'), _('MAC'), _('Vendor'), _('Addresses'), _('Profile'), _('State'), '' ].map(function(t) {
				return E('th', { 'class': 'th' }, [ t ]);
			}))
		].concat(devices.length ? this.rows(devices) : [
			E('tr', { 'class': 'tr placeholder' }, [ E('td', { 'class': 'td' }, [ E('em', {}, [ _('No devices seen yet.') ]) ]) ])
		]));
	},

	refresh: function() {
		var self = this;
		return callDevices().then(function(res) {
			var t = document.getElementById('leash-devices');
			if (t)
				t.parentNode.replaceChild(self.renderTable(res), t);
		});
	},

	render: function(res) {
		var self = this;
		poll.add(function() { return self.refresh(); }, 10);
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('leash: devices') ]),
			E('div', { 'class': 'cbi-section' }, [ this.renderTable(res) ])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
